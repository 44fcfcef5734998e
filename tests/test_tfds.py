"""TFDS datasets: built from the synthetic mini datasets, read back equal to the folders.

Every builder (all seven datasets, AGORA in both image modes) is built once per
module; records, pipeline batches (augmented training, evaluation, two hosts,
a restored iterator in a worker process) must equal the folder path's byte for
byte. tensorflow-datasets comes with the test extra (`pip install -e
".[test]"` installs `.[tfds]`); without it these tests fail, they do not skip.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from h4w_datasets import pipeline, registry, synthetic

TFDS_MISSING = importlib.util.find_spec('tensorflow_datasets') is None
# Synthetic AGORA's full images are 320x180 stand-ins for the 1280x720 ones (agora.py).
AGORA_FULL = {'resolution': (180, 320)}


@pytest.fixture(scope='module', autouse=True)
def _tfds_installed():
  if TFDS_MISSING:
    pytest.fail('tensorflow-datasets is not installed: `pip install -e ".[tfds]"` '
                '(the test extra includes it)')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory, clean_human_model_files):
  root = tmp_path_factory.mktemp('tfds_folders')
  synthetic.write_mini_datasets(root, clean_human_model_files, num=3, seed=7)
  return root


@pytest.fixture(scope='module')
def data_dir(data_root, tmp_path_factory):
  from h4w_datasets import tfds_build
  out = tmp_path_factory.mktemp('tfds')
  for name in synthetic.DATASET_MODULES:
    tfds_build.build(name, data_root, out)
  tfds_build.build('AGORA', data_root, out, config='full_320x180')
  return out


def _cases():
  """(dataset, split, reader options): every split, and each option that changes records."""
  from h4w_datasets.tfds_builders import BUILDERS
  for name, cls in BUILDERS.items():
    for split in cls.SPLITS:
      yield name, split, {}
      if name == 'MPII':
        yield name, split, {'binarize_valid': True}
      if name == 'AGORA':
        yield name, split, {'gendered': True}
        yield name, split, AGORA_FULL


def assert_same_records(folder, stored, data_root, where):
  assert len(folder) == len(stored), where
  for i in range(len(folder)):
    a, b = folder[i], stored[i]
    assert set(a) - {'img_path'} == set(b) - {'img_bytes', 'source_path'}, f'{where}[{i}]'
    for key, value in a.items():
      if key == 'img_path':
        continue
      x, y = np.asarray(value), b[key]
      assert (x.dtype, x.shape) == (y.dtype, y.shape), f'{where}[{i}] {key}'
      assert x.tobytes() == y.tobytes(), f'{where}[{i}] {key}: values differ'
    assert Path(a['img_path']).read_bytes() == b['img_bytes'], f'{where}[{i}] image bytes'
    assert b['source_path'] == Path(a['img_path']).relative_to(data_root).as_posix()


def test_every_dataset_split_and_option_reads_back_byte_for_byte(data_root, data_dir):
  options_mattered = set()
  for name, split, options in _cases():
    folder = registry.make_reader(name, data_root, split, **options)
    stored = registry.make_reader(name, data_root, split, source='tfds', tfds_data_dir=data_dir,
                                  **options)
    assert stored.info == folder.info
    assert getattr(stored, 'resolution', None) == getattr(folder, 'resolution', None)
    assert_same_records(folder, stored, data_root, f'{name} {split} {options}')
    if options and 'resolution' not in options:
      plain = registry.make_reader(name, data_root, split)
      if any(plain[i]['joint_valid'].tobytes() != folder[i]['joint_valid'].tobytes()
             or plain[i]['smplx_gender'] != folder[i]['smplx_gender'] for i in range(len(plain))):
        options_mattered.add(name)
  # The read-time options change the synthetic records, so the check above is not vacuous.
  assert options_mattered == {'MPII', 'AGORA'}, options_mattered


def _groups(data_root, data_dir, source):
  return registry.make_groups(data_root, ('Human36M', 'AGORA'), ('MPII', 'MSCOCO'),
                              {'AGORA': AGORA_FULL}, source=source, tfds_data_dir=data_dir)


def _config(**kw):
  base = dict(seed=3, local_batch=4, num_epochs=2, num_workers=0, read_threads=2)
  base.update(kw)
  return pipeline.PipelineConfig(**base)


def _take(ds, n):
  return [batch for _, batch in zip(range(n), ds)]


def assert_same_batches(xs, ys, where):
  assert len(xs) == len(ys) > 0, where
  for step, (x, y) in enumerate(zip(xs, ys)):
    assert set(x) == set(y), f'{where} step {step}: keys {sorted(set(x) ^ set(y))}'
    for key in x:
      assert x[key].dtype == y[key].dtype, f'{where} step {step} {key}'
      np.testing.assert_array_equal(x[key], y[key], err_msg=f'{where} step {step} {key}')


def test_pipeline_batches_equal_the_folder_path(data_root, data_dir):
  folder = _groups(data_root, data_dir, 'folder')
  stored = _groups(data_root, data_dir, 'tfds')
  expected = _take(pipeline.build(folder, _config())[0], 5)
  assert_same_batches(expected, _take(pipeline.build(stored, _config())[0], 5), 'train')
  # Two hosts read their own halves of the same global batches.
  hosts = [_take(pipeline.build(stored, _config(local_batch=2), process_index=h,
                                process_count=2)[0], 5) for h in range(2)]
  halves = [{k: np.concatenate([a[k], b[k]]) for k in a} for a, b in zip(*hosts)]
  assert_same_batches(expected, halves, '2 hosts')
  # Evaluation: every sample once, in order, with the per-dataset extras (AGORA person_id).
  ev = _config(num_epochs=1)
  for name in ('AGORA', 'EHF'):
    options = AGORA_FULL if name == 'AGORA' else {}
    split = 'validation' if name == 'AGORA' else 'test'
    folder, stored = (registry.make_reader(name, data_root, split, source=s,
                                           tfds_data_dir=data_dir, **options)
                      for s in ('folder', 'tfds'))
    assert_same_batches(list(pipeline.build([[folder]], ev, train=False)[0]),
                        list(pipeline.build([[stored]], ev, train=False)[0]), f'eval {name}')


def test_restored_iterator_in_a_worker_process(data_root, data_dir):
  """The reader pickles without its open source; the worker reopens it."""
  stored = _groups(data_root, data_dir, 'tfds')
  it = iter(pipeline.build(stored, _config(num_workers=1))[0])
  next(it)
  state = it.get_state()
  expected = _take(it, 2)
  restored = iter(pipeline.build(stored, _config(num_workers=1))[0])
  restored.set_state(state)
  assert_same_batches(expected, _take(restored, 2), 'restored')
  folder = _take(pipeline.build(_groups(data_root, data_dir, 'folder'), _config())[0], 3)[1:]
  assert_same_batches(folder, expected, 'worker vs folder')


def test_plain_tfds_data_source_reads_it_without_tensorflow_or_this_package(data_dir):
  code = (
      'import sys, numpy as np, tensorflow_datasets as tfds\n'
      f'src = tfds.data_source("h4w_mscoco", split="train", data_dir={str(data_dir)!r}, '
      'download=False, decoders={"image": tfds.decode.SkipDecoding()})\n'
      'r = src[1]\n'
      'assert r["image"][:2] == b"\\xff\\xd8", r["image"][:4]\n'
      'assert r["joint_img"].dtype == np.float32 and r["joint_img"].shape == (134, 3)\n'
      'assert r["ann_id"].dtype == np.int64 and r["ann_id"].shape == ()\n'
      'assert not [m for m in sys.modules if m.startswith(("tensorflow.", "h4w"))]\n'
      'assert "tensorflow" not in sys.modules\n'
      'print(len(src))\n')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       cwd='/', timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split()[-1] == '3'


def test_a_split_over_the_shuffle_buffer_builds_without_tensorflow(data_root, tmp_path,
                                                                    monkeypatch):
  """Past MAX_MEM_BUFFER_SIZE (1 GB) TFDS spills to files with tf.io.gfile; forced here."""
  from tensorflow_datasets.core import shuffle
  from tensorflow_datasets.core.utils.lazy_imports_utils import tensorflow as lazy_tf
  from h4w_datasets import tfds_build, tfds_builders
  monkeypatch.setattr(shuffle, 'MAX_MEM_BUFFER_SIZE', 16 << 10)   # EHF: ~150 KB per record
  with monkeypatch.context() as unpatched:   # TFDS as it is: the spill needs TensorFlow
    unpatched.setattr(shuffle, 'tf', lazy_tf)
    unpatched.setattr(tfds_builders, 'allow_spill_without_tensorflow', lambda: False)
    with pytest.raises(ModuleNotFoundError, match='tensorflow'):
      tfds_build.build('EHF', data_root, tmp_path / 'unpatched')
  tfds_build.build('EHF', data_root, tmp_path)
  assert 'tensorflow' not in sys.modules
  assert_same_records(registry.make_reader('EHF', data_root, 'test'),
                      registry.make_reader('EHF', data_root, 'test', source='tfds',
                                           tfds_data_dir=tmp_path),
                      data_root, 'spilled EHF')


def test_missing_dataset_and_bad_options_are_named(data_root, data_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match=r'h4w_pw3d.*tfds_build --dataset PW3D'):
    registry.make_reader('PW3D', data_root, 'train', source='tfds', tfds_data_dir=tmp_path)
  with pytest.raises(ValueError, match=r"\['binarize'\] are not supported"):
    registry.make_reader('MPII', data_root, 'train', source='tfds', tfds_data_dir=data_dir,
                         binarize=True)
  with pytest.raises(ValueError, match='needs tfds_data_dir'):
    registry.make_reader('MPII', data_root, 'train', source='tfds')
  with pytest.raises(ValueError, match="one of \\('folder', 'tfds'\\)"):
    registry.make_reader('MPII', data_root, 'train', source='shards')
  from h4w_datasets import tfds_build
  with pytest.raises(ValueError, match="config 'tiny'"):
    tfds_build.build('AGORA', data_root, tmp_path, config='tiny')
