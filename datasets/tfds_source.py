"""A built TFDS dataset as a reader for the grain pipeline (`config.data.source = 'tfds'`).

    reader = TfdsReader('MPII', 'train', data_dir='tfds')
    reader = registry.make_reader('AGORA', data_root, 'validation', source='tfds',
                                  tfds_data_dir=d, resolution=(720, 1280))

`TfdsReader` takes the folder reader's name and keyword options and has
what the pipeline uses of a reader (`info`, `__len__`, `__getitem__`): record
i equals the folder reader's record i field for field, with `img_bytes` (the
image file's bytes) and `source_path` (relative to data_root) in place of
`img_path`. Underneath is `tfds.data_source(...)`, TFDS's ArrayRecord
random-access source: no TensorFlow, the image left encoded (the worker
decodes it with OpenCV, as for files).

The source hands over each record's serialized tf.train.Example
(`DeserializeMethod.RAW_BYTES`) and `parse` reads it: every numeric feature
is Tensor(encoding=BYTES), the array's raw bytes in one bytes_list entry, so a
record is one proto parse and a `np.frombuffer` per field. TFDS's own
per-feature decoding gives the same arrays but read ~3,900 records/s on one
core against ~6,500 this way, and a worker's examples/s went from 0.90 to
0.95 of the folder path's (bench/input_pipeline.py --tfds-only --image-size
480x640, on a shared 2-core machine).

Per-host slices, mixing and restorable iterators stay in `pipeline`: every
host opens the whole split and reads its own global positions. The reader
pickles without its open source, so each grain worker process opens its own.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds   # the [tfds] extra
from tensorflow_datasets.proto import tf_example_pb2

from h4w_datasets import tfds_builders as builders

_IMAGE, _PATH = 'image', 'source_path'


class TfdsReader:
  """Records of one split of an h4w_* TFDS dataset (see the module docstring).

  Args:
    dataset: upstream's name ('Human36M', 'MSCOCO', 'MPII', 'MPI_INF_3DHP', 'PW3D',
      'AGORA', 'EHF').
    split: as the folder reader's.
    data_dir: the TFDS data_dir the dataset was built into.
    **options: the folder reader's keyword options (AGORA resolution, gendered;
      MPII binarize_valid).
  """

  def __init__(self, dataset: str, split: str, data_dir: os.PathLike | str, **options):
    if dataset not in builders.BUILDERS:
      raise ValueError(f'unknown dataset {dataset!r}; known: {", ".join(builders.BUILDERS)}')
    self._cls = builders.BUILDERS[dataset]
    self.name, config_options, self._read_options = self._cls.resolve(options)
    self.split = split
    self.data_dir = os.fspath(data_dir)
    self.info = self._cls.dataset_info()
    # The folder reader's attributes (AGORA: resolution, which evaluation reads).
    for key, value in {**config_options, **self._read_options}.items():
      setattr(self, key, tuple(value) if isinstance(value, (list, tuple)) else value)
    self._source = None
    self._open()
    meta = self._source.dataset_info.metadata or {}
    if meta.get('record_format') != builders.RECORD_FORMAT or meta.get('reader') != dataset:
      raise ValueError(f'{self._where()}: metadata.json says reader {meta.get("reader")!r}, '
                       f'format {meta.get("record_format")!r}; expected {dataset!r}, '
                       f'{builders.RECORD_FORMAT!r} (rebuild it with this version)')
    self._fields = {}
    for key, feature in self._source.dataset_info.features.items():
      if key in (_IMAGE, _PATH):
        continue
      if feature.to_json_content().encoding != 'bytes':
        raise ValueError(f'{self._where()}: feature {key!r} is not Tensor(encoding=BYTES) '
                         '(not written by h4w_datasets.tfds_builders; rebuild it)')
      self._fields[key] = (tuple(feature.shape), np.dtype(feature.np_dtype))
    self._length = len(self._source)

  def _where(self) -> str:
    return f'TFDS {self.name} {self.split} in {self.data_dir}'

  def _open(self) -> None:
    try:
      self._source = tfds.data_source(
          self.name, split=self.split, data_dir=self.data_dir, download=False,
          deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    except (ValueError, KeyError, AssertionError, FileNotFoundError) as e:
      # DatasetNotFoundError (a ValueError) lists every TFDS dataset: keep the message short.
      first = str(e).splitlines()[0] if str(e) else type(e).__name__
      raise FileNotFoundError(
          f'{self._where()}: cannot open it ({first}). Build it with `python -m '
          f'h4w_datasets.tfds_build --dataset {self._cls.READER} --data_root DATA '
          f'--data_dir {self.data_dir}`') from None

  def __getstate__(self):
    state = dict(self.__dict__)
    state['_source'] = None   # reopened in the process that unpickles it
    return state

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> dict[str, Any]:
    if self._source is None:
      self._open()
    return self._cls.apply_read_options(self.parse(self._source[int(index)]),
                                        self._read_options)

  def parse(self, serialized: bytes) -> dict[str, Any]:
    """A stored tf.train.Example -> the record (see the module docstring)."""
    feature = tf_example_pb2.Example.FromString(serialized).features.feature
    record = {}
    for key, (shape, dtype) in self._fields.items():
      value = np.frombuffer(feature[key].bytes_list.value[0], dtype)
      if value.size != int(np.prod(shape)):
        raise ValueError(f'{self._where()}: {key!r} holds {value.size} values, expected '
                         f'{dtype}{shape}')
      record[key] = value.reshape(shape).copy()   # writable, as the folder readers' arrays
    record['img_bytes'] = feature[_IMAGE].bytes_list.value[0]
    record['source_path'] = feature[_PATH].bytes_list.value[0].decode()
    return record

  def __repr__(self) -> str:
    return f'TfdsReader({self.name!r}, {self.split!r}, data_dir={self.data_dir!r})'
