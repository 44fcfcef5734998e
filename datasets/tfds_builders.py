"""TFDS builders: every dataset's records as a versioned TFDS ArrayRecord dataset, no TensorFlow.

One `GeneratorBasedBuilder` per reader, named `h4w_<module>`: h4w_human36m,
h4w_mscoco, h4w_mpii, h4w_mpi_inf_3dhp, h4w_pw3d, h4w_agora (configs
`crops_4k`, `full_<W>x<H>`), h4w_ehf. (No hand datasets yet: they get a
builder when they get a reader.) Build one with
`python -m h4w_datasets.tfds_build --dataset MPII --data_root data --data_dir tfds`.

A builder reads upstream's folder layout with the project's own reader
(`registry.make_reader`, data_root = upstream's data/ folder) and stores each
record whole, in the reader's order:

  every numeric field of `example.record_spec(J)` plus the reader's fixed-shape
    extras (EXTRA_FIELDS) as `Tensor(shape, dtype, encoding=BYTES)`: the
    array's raw bytes, so every dtype (float64 too) reads back bit-exact and
    0-d fields come back as 0-d arrays, not Python scalars;
  `image`: `Image(encoding_format=...)` holding the image FILE's bytes as on
    disk (never re-encoded: encoding pixels would need TensorFlow). Read it
    with `decoders={'image': tfds.decode.SkipDecoding()}` and decode in the
    worker with OpenCV, as the folder path does;
  `source_path`: the image path relative to data_root (AGORA's result files are
    named after it).

`disable_shuffling=True` keeps index i == the reader's record i, so the grain
pipeline's (seed, position) arithmetic picks the same samples from either
path. Record-changing reader options are either a builder config (AGORA's
resolution: different images) or stored in full and applied when read
(`READ_OPTIONS`, see `tfds_source.TfdsReader`): AGORA is built with
gendered=True (smplx_gender holds the annotation's gender; reading with the
default gendered=False zeroes it, as the folder reader does) and MPII with
the raw joint_valid column (binarize_valid applies `v > 0` on read).

TensorFlow is not needed to build: TFDS's shuffler spills a split over 1 GB
to temporary files through `tf.io.gfile`; `allow_spill_without_tensorflow`
gives it local-file stand-ins (see there).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import resource
import time
import types
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import tensorflow_datasets as tfds

from h4w_datasets import agora
from h4w_datasets import example as ex
from h4w_datasets import registry
from h4w_datasets.synthetic import DATASET_MODULES

RECORD_FORMAT = 'h4w_datasets.example/1'   # example.py's record contract, stored in metadata.json

# Where each dataset comes from and under which terms. A built dataset holds the source's
# images and annotations: it inherits these terms and must not be redistributed beyond them.
SOURCES = {
    'Human36M': dict(
        homepage='http://vision.imar.ro/human3.6m/',
        license='Human3.6M license: academic, non-commercial research only, registration '
                'required; NeuralAnnot SMPL-X fits (Moon et al., Hand4Whole): their terms.',
        citation='@article{h36m_pami, title={Human3.6M: Large Scale Datasets and Predictive '
                 'Methods for 3D Human Sensing in Natural Environments}, author={Ionescu, '
                 'Catalin and Papava, Dragos and Olaru, Vlad and Sminchisescu, Cristian}, '
                 'journal={TPAMI}, year={2014}}'),
    'MSCOCO': dict(
        homepage='https://github.com/jin-s13/COCO-WholeBody',
        license='COCO annotations: CC BY 4.0; images: Flickr terms of use; COCO-WholeBody '
                'keypoints: its repository\'s terms; NeuralAnnot SMPL-X fits: their terms.',
        citation='@inproceedings{jin2020whole, title={Whole-Body Human Pose Estimation in the '
                 'Wild}, author={Jin, Sheng and others}, booktitle={ECCV}, year={2020}}'),
    'MPII': dict(
        homepage='http://human-pose.mpi-inf.mpg.de/',
        license='MPII Human Pose: Simplified BSD license; NeuralAnnot SMPL-X fits: their terms.',
        citation='@inproceedings{andriluka14cvpr, title={2D Human Pose Estimation: New Benchmark '
                 'and State of the Art Analysis}, author={Andriluka, Mykhaylo and others}, '
                 'booktitle={CVPR}, year={2014}}'),
    'MPI_INF_3DHP': dict(
        homepage='https://vcai.mpi-inf.mpg.de/3dhp-dataset/',
        license='MPI-INF-3DHP license: non-commercial research only; NeuralAnnot SMPL-X fits: '
                'their terms.',
        citation='@inproceedings{mono-3dhp2017, title={Monocular 3D Human Pose Estimation In '
                 'The Wild Using Improved CNN Supervision}, author={Mehta, Dushyant and '
                 'others}, booktitle={3DV}, year={2017}}'),
    'PW3D': dict(
        homepage='https://virtualhumans.mpi-inf.mpg.de/3DPW/',
        license='3DPW license: non-commercial scientific research only.',
        citation='@inproceedings{vonMarcard2018, title={Recovering Accurate 3D Human Pose in '
                 'The Wild Using IMUs and a Moving Camera}, author={von Marcard, Timo and '
                 'others}, booktitle={ECCV}, year={2018}}'),
    'AGORA': dict(
        homepage='https://agora.is.tue.mpg.de/',
        license='AGORA license: non-commercial scientific research only, registration '
                'required.',
        citation='@inproceedings{Patel:CVPR:2021, title={{AGORA}: Avatars in Geography '
                 'Optimized for Regression Analysis}, author={Patel, Priyanka and others}, '
                 'booktitle={CVPR}, year={2021}}'),
    'EHF': dict(
        homepage='https://smpl-x.is.tue.mpg.de/',
        license='EHF (released with SMPL-X): SMPL-X model license, non-commercial research '
                'only.',
        citation='@inproceedings{SMPL-X:2019, title={Expressive Body Capture: 3D Hands, Face, '
                 'and Body from a Single Image}, author={Pavlakos, Georgios and others}, '
                 'booktitle={CVPR}, year={2019}}'),
}

F32, I32, I64 = np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64)


@dataclasses.dataclass
class H4wConfig(tfds.core.BuilderConfig):
  """A reader variant whose records differ (AGORA's resolution): reader kwargs at build time."""
  reader_options: tuple[tuple[str, Any], ...] = ()


class H4wBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the h4w_* builders: subclasses set READER, SPLITS and, if any, the extras."""

  READER: str = ''                  # the reader's name in registry (upstream's dataset name)
  SPLITS: tuple[str, ...] = ()
  IMAGE_FORMAT = 'jpeg'             # the files' format: stored as they are
  EXTRA_FIELDS: Mapping[str, tuple[tuple[int, ...], np.dtype]] = {}
  BUILD_OPTIONS: Mapping[str, Any] = {}   # reader kwargs at build time (keep the most information)
  READ_OPTIONS: Mapping[str, Any] = {}    # reader kwargs applied on read, with their defaults
  CONFIG_OPTIONS: tuple[str, ...] = ()    # reader kwargs that select a builder config

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release: h4w_datasets.example records with the image file.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Pass upstream's data/ folder (the one that holds the dataset's <NAME>/ folder) as "
      '`python -m h4w_datasets.tfds_build --data_root DATA` (or --manual_dir of `tfds build` '
      'with TensorFlow installed). See README, "Datasets".')

  def __init__(self, *, data_root: os.PathLike | None = None, progress_every: int = 1000,
               file_format: str | None = None, **kwargs):
    self._data_root = data_root
    self._progress_every = progress_every
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # TFDS looks for checksums and metadata files beside the builder through the top package's
    # resources; h4w_datasets is a namespace package (no __init__.py), which that lookup
    # cannot read. This module's own file is what TFDS wants.
    from etils import epath
    return epath.Path(__file__)

  # ------------------------------------------------------------------ spec
  @classmethod
  def dataset_info(cls):
    """The reader's DatasetInfo (joint set, flip pairs, masks)."""
    return importlib.import_module(f'h4w_datasets.{DATASET_MODULES[cls.READER]}').INFO

  @classmethod
  def field_spec(cls) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Every numeric field of a record: record_spec(J) plus the reader's extras."""
    spec = dict(ex.record_spec(cls.dataset_info().num_joints))
    spec.update({k: (tuple(shape), np.dtype(dtype))
                 for k, (shape, dtype) in cls.EXTRA_FIELDS.items()})
    return spec

  @classmethod
  def features(cls) -> tfds.features.FeaturesDict:
    tensors = {k: tfds.features.Tensor(shape=shape, dtype=dtype,
                                       encoding=tfds.features.Encoding.BYTES)
               for k, (shape, dtype) in cls.field_spec().items()}
    return tfds.features.FeaturesDict({
        **tensors,
        'image': tfds.features.Image(shape=(None, None, 3), encoding_format=cls.IMAGE_FORMAT,
                                     doc='the image file, its bytes as on disk'),
        'source_path': tfds.features.Text(doc="the image's path relative to data_root"),
    })

  @classmethod
  def config_for(cls, options: Mapping[str, Any]) -> H4wConfig | None:
    """The builder config that reader kwargs `options` select (None: no configs)."""
    del options
    return None

  @classmethod
  def resolve(cls, options: Mapping[str, Any]) -> tuple[str, dict, dict]:
    """Folder-reader kwargs -> (TFDS name with config, config's kwargs, read-time kwargs)."""
    unknown = set(options) - set(cls.READ_OPTIONS) - set(cls.CONFIG_OPTIONS)
    if unknown:
      raise ValueError(f'{cls.READER} from TFDS: reader options {sorted(unknown)} are not '
                       f'supported (supported: {sorted({*cls.READ_OPTIONS, *cls.CONFIG_OPTIONS})})')
    config = cls.config_for(options)
    read = {k: options.get(k, default) for k, default in cls.READ_OPTIONS.items()}
    if config is None:
      return cls.name, {}, read
    return f'{cls.name}/{config.name}', dict(config.reader_options), read

  @classmethod
  def apply_read_options(cls, record: dict, options: Mapping[str, Any]) -> dict:
    """The stored record -> the folder reader's record under `options` (READ_OPTIONS)."""
    del options
    return record

  def _info(self) -> tfds.core.DatasetInfo:
    source = SOURCES[self.READER]
    config = self.builder_config
    description = (
        f'{self.READER} for Hand4Whole (h4w-jax): one record per person as '
        f'h4w_datasets.example describes it ({RECORD_FORMAT}), with the image file. '
        f'Written by h4w_datasets.tfds_builders from upstream\'s folder layout. '
        f'Source: {source["homepage"]}. License: {source["license"]}')
    if config is not None and config.description:
      description += f' Config {config.name}: {config.description}.'
    return tfds.core.DatasetInfo(
        builder=self,
        description=description,
        features=self.features(),
        homepage=source['homepage'],
        citation=source['citation'],
        license=source['license'],
        disable_shuffling=True,   # record i of a split is the reader's record i
        # metadata.json lets a reader open the data without this module.
        metadata=tfds.core.MetadataDict(
            reader=self.READER, record_format=RECORD_FORMAT,
            reader_options=_jsonable(self._reader_options()),
            read_options=_jsonable(dict(self.READ_OPTIONS))),
    )

  # ------------------------------------------------------------------ build
  def _reader_options(self) -> dict:
    options = dict(self.BUILD_OPTIONS)
    if self.builder_config is not None:
      options.update(dict(self.builder_config.reader_options))
    return options

  def _split_generators(self, dl_manager):
    allow_spill_without_tensorflow()
    data_root = self._data_root or dl_manager.manual_dir
    if not data_root:
      raise ValueError(f'{self.name}: no data folder. ' + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    data_root = Path(os.fspath(data_root))
    return {split: self._generate_examples(data_root, split) for split in self.SPLITS}

  def _generate_examples(self, data_root: Path, split: str):
    reader = registry.make_reader(self.READER, data_root, split, **self._reader_options())
    spec = self.field_spec()
    total = len(reader)
    # With disable_shuffling the shuffler buckets by the key itself: spreading the keys over
    # the 128-bit range keeps the order and fills its 1000 spill buckets evenly (small
    # integer keys would all land in bucket 0, read back whole into memory).
    stride = 2**128 // max(total, 1)
    root = data_root.absolute()
    start, nbytes = time.perf_counter(), 0
    for index in range(total):
      record = reader[index]
      where = f'{self.READER} {split}[{index}]'
      unknown = set(record) - set(spec) - {'img_path'}
      if unknown:
        raise ValueError(f'{where}: fields {sorted(unknown)} are not in the feature spec; '
                         f'declare them in {type(self).__name__}.EXTRA_FIELDS')
      out = {}
      for key, (shape, dtype) in spec.items():
        if key not in record:
          raise ValueError(f'{where}: the record has no {key!r}')
        value = np.asarray(record[key])
        if value.shape != shape or value.dtype != dtype:
          raise ValueError(f'{where}: {key!r} is {value.dtype}{value.shape}, the feature spec '
                           f'says {dtype}{shape}')
        out[key] = value
      path = Path(str(record['img_path']))
      with open(path, 'rb') as f:
        out['image'] = f.read()
      nbytes += len(out['image'])
      try:
        out['source_path'] = path.absolute().relative_to(root).as_posix()
      except ValueError:
        out['source_path'] = path.as_posix()
      done = index + 1
      if done % self._progress_every == 0 or done == total:
        elapsed = max(time.perf_counter() - start, 1e-9)
        rate = done / elapsed
        print(f'  {self.name} {split}: {done}/{total} records, {rate:.0f}/s, '
              f'{nbytes / elapsed / 2**20:.1f} MiB/s of images, '
              f'ETA {(total - done) / rate:.0f} s', flush=True)
      yield index * stride, out


def _jsonable(options: Mapping[str, Any]) -> dict:
  return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


# ---------------------------------------------------------------------- datasets
class H4wHuman36m(H4wBuilder):
  name = 'h4w_human36m'
  READER = 'Human36M'
  SPLITS = ('train', 'test')


class H4wMscoco(H4wBuilder):
  name = 'h4w_mscoco'
  READER = 'MSCOCO'
  SPLITS = ('train', 'test')


class H4wMpii(H4wBuilder):
  name = 'h4w_mpii'
  READER = 'MPII'
  SPLITS = ('train',)
  READ_OPTIONS = {'binarize_valid': False}

  @classmethod
  def apply_read_options(cls, record, options):
    if options['binarize_valid']:   # mpii.MPII: valid = (v > 0) of the stored raw column
      record['joint_valid'] = (record['joint_valid'] > 0).astype(np.float32)
    return record


class H4wMpiInf3dhp(H4wBuilder):
  name = 'h4w_mpi_inf_3dhp'
  READER = 'MPI_INF_3DHP'
  SPLITS = ('train', 'test')


class H4wPw3d(H4wBuilder):
  name = 'h4w_pw3d'
  READER = 'PW3D'
  SPLITS = ('train', 'validation', 'test')
  EXTRA_FIELDS = {'smpl_pose': ((72,), F32), 'smpl_shape': ((10,), F32),
                  'smpl_trans': ((3,), F32), 'smpl_gender': ((), I32)}


class H4wAgora(H4wBuilder):
  """AGORA's two image sets are two configs; any other full-image size is a custom config."""
  name = 'h4w_agora'
  READER = 'AGORA'
  SPLITS = ('train', 'validation', 'test')
  IMAGE_FORMAT = 'png'
  EXTRA_FIELDS = {'person_id': ((), I64), 'crop_trans': ((2, 3), F32)}
  BUILD_OPTIONS = {'gendered': True}
  READ_OPTIONS = {'gendered': False}
  CONFIG_OPTIONS = ('resolution',)
  BUILDER_CONFIGS = [
      H4wConfig(name='crops_4k', description="the 512x384 crops cut from the 3840x2160 "
                "images (the reader's default, upstream's choice)",
                reader_options=(('resolution', tuple(agora.ORIG_SHAPE)),)),
      H4wConfig(name='full_1280x720', description='the whole images downscaled to 1280x720',
                reader_options=(('resolution', (720, 1280)),)),
  ]
  DEFAULT_CONFIG_NAME = 'crops_4k'

  @classmethod
  def apply_read_options(cls, record, options):
    if not options['gendered']:   # agora.AGORA(gendered=False): every fit read as neutral
      record['smplx_gender'] = np.zeros((), np.int32)
    return record

  @classmethod
  def config_for(cls, options: Mapping[str, Any]) -> H4wConfig:
    resolution = tuple(int(v) for v in options.get('resolution', agora.ORIG_SHAPE))
    if resolution == tuple(agora.ORIG_SHAPE):
      return cls.BUILDER_CONFIGS[0]
    return cls.config_named(f'full_{resolution[1]}x{resolution[0]}')

  @classmethod
  def config_named(cls, name: str) -> H4wConfig:
    known = {c.name: c for c in cls.BUILDER_CONFIGS}
    if name in known:
      return known[name]
    match = re.fullmatch(r'full_(\d+)x(\d+)', name)
    if not match:
      raise ValueError(f'h4w_agora: config {name!r} is neither {sorted(known)} nor '
                       'full_<W>x<H>')
    width, height = int(match[1]), int(match[2])
    return H4wConfig(name=name, description=f'the whole images read at {width}x{height}',
                     reader_options=(('resolution', (height, width)),))


class H4wEhf(H4wBuilder):
  name = 'h4w_ehf'
  READER = 'EHF'
  SPLITS = ('test',)
  EXTRA_FIELDS = {'smplx_mesh_cam': ((10475, 3), F32)}


BUILDERS: dict[str, type[H4wBuilder]] = {
    cls.READER: cls for cls in (H4wHuman36m, H4wMscoco, H4wMpii, H4wMpiInf3dhp, H4wPw3d,
                                H4wAgora, H4wEhf)}


def builder_config(dataset: str, config: str | None) -> H4wConfig | str | None:
  """A config name as the command line gives it -> what the builder's `config=` takes."""
  cls = BUILDERS[dataset]
  if config is None or not cls.BUILDER_CONFIGS:
    if config is not None:
      raise ValueError(f'{cls.name} has no configs; got {config!r}')
    return None
  return cls.config_named(config) if hasattr(cls, 'config_named') else config


# ---------------------------------------------------------------------- spill without TF
class _NeverRaised(Exception):
  """tf.errors.ResourceExhaustedError's stand-in: OSError(EMFILE) propagates as it is."""


def allow_spill_without_tensorflow(min_open_files: int = 4096) -> bool:
  """Let a split larger than 1 GB build without TensorFlow; True when patched.

  tensorflow-datasets 4.9's GeneratorBasedBuilder sends every serialized
  example through `core.shuffle.Shuffler`, which keeps 1 GB
  (`MAX_MEM_BUFFER_SIZE`) in memory and then spills into 1000 temporary bucket
  files opened with `tf.io.gfile`, i.e. ModuleNotFoundError('tensorflow')
  without TensorFlow. This gives that module a `tf` with the four calls it
  makes (io.gfile.GFile/exists/remove, errors.ResourceExhaustedError) on
  etils.epath and raises the open-file limit for the
  1000 buckets. With TensorFlow installed it only raises the limit.
  tests/test_tfds.py forces a spill (a 64 KiB buffer) and checks the order.
  """
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  if soft < min_open_files:
    new = min_open_files if hard == resource.RLIM_INFINITY else min(min_open_files, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
  if importlib.util.find_spec('tensorflow') is not None:
    return False
  from etils import epath
  from tensorflow_datasets.core import shuffle
  gfile = types.SimpleNamespace(GFile=lambda path, mode='r': epath.Path(path).open(mode),
                                exists=lambda path: epath.Path(path).exists(),
                                remove=lambda path: epath.Path(path).unlink())
  shuffle.tf = types.SimpleNamespace(
      io=types.SimpleNamespace(gfile=gfile),
      errors=types.SimpleNamespace(ResourceExhaustedError=_NeverRaised))
  return True
