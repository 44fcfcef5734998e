"""The grain pipeline: upstream's mixing, determinism, host sharding, state restore, bad input."""

import collections

import numpy as np
import pytest

from h4w_datasets import pipeline
from fake_datasets import FAKE_INFO_3D, FakeReader


@pytest.fixture(scope='module')
def readers(tmp_path_factory):
  root = tmp_path_factory.mktemp('fake')
  g3 = [FakeReader(root / 'a', 5, FAKE_INFO_3D, seed=1)]
  g2 = [FakeReader(root / 'b', 7, seed=2), FakeReader(root / 'c', 4, seed=3)]
  return g3, g2


def _config(**kw):
  base = dict(seed=3, local_batch=4, num_epochs=2, num_workers=0, read_threads=2)
  base.update(kw)
  return pipeline.PipelineConfig(**base)


def _ids(batch):
  return list(zip(batch['dataset_id'].tolist(), batch['index'].tolist()))


def test_mixture_matches_upstream_multiple_datasets(readers):
  g3, g2 = readers
  mixture = pipeline.Mixture((tuple(g3), tuple(g2)))
  assert mixture.group_sizes == (5, 11)
  assert mixture.epoch_length == 22
  counts = collections.Counter()
  rng = np.random.default_rng(0)
  for position in range(mixture.epoch_length):
    counts[mixture.locate(position, rng)] += 1
  # The larger (2D) group is seen exactly once per epoch.
  for reader_id in (1, 2):
    for i in range(len(mixture.readers[reader_id])):
      assert counts[(reader_id, i)] == 1
  # The smaller group: 11 // 5 = 2 full passes plus 1 uniform pick.
  assert sum(counts[(0, i)] for i in range(5)) == 11
  assert all(counts[(0, i)] >= 2 for i in range(5))


def test_same_batches_for_any_worker_count_and_seed_determinism(readers):
  g3, g2 = readers
  ds0, _ = pipeline.build([g3, g2], _config(num_workers=0))
  ds2, _ = pipeline.build([g3, g2], _config(num_workers=2))
  batches0 = [b for _, b in zip(range(5), ds0)]
  batches2 = [b for _, b in zip(range(5), ds2)]
  for b0, b2 in zip(batches0, batches2):
    assert _ids(b0) == _ids(b2)
    np.testing.assert_array_equal(b0['img'], b2['img'])
    np.testing.assert_array_equal(b0['rot'], b2['rot'])
  other, _ = pipeline.build([g3, g2], _config(seed=4))
  assert [_ids(b) for _, b in zip(range(5), other)] != [_ids(b) for b in batches0]
  assert batches0[0]['img'].dtype == np.uint8 and batches0[0]['img'].shape == (4, 512, 384, 3)


def test_host_shards_concatenate_to_the_single_host_batch(readers):
  g3, g2 = readers
  single, _ = pipeline.build([g3, g2], _config(local_batch=4))
  hosts = [pipeline.build([g3, g2], _config(local_batch=2), process_index=h, process_count=2)[0]
           for h in range(2)]
  for step, (whole, part0, part1) in enumerate(zip(single, *hosts)):
    assert _ids(whole) == _ids(part0) + _ids(part1)
    np.testing.assert_array_equal(whole['joint_img'],
                                  np.concatenate([part0['joint_img'], part1['joint_img']]))
    if step == 4:
      break


def test_epochs_are_reshuffled_and_drop_the_last_partial_batch(readers):
  g3, g2 = readers
  _, source = pipeline.build([g3, g2], _config(local_batch=4))
  assert source.steps_per_epoch == 22 // 4
  first = [source.sample_of(p)[:2] for p in range(source.epoch_positions)]
  second = [source.sample_of(p + source.epoch_positions)[:2]
            for p in range(source.epoch_positions)]
  assert first != second


def test_restored_iterator_yields_the_same_next_batch(readers):
  g3, g2 = readers
  ds, _ = pipeline.build([g3, g2], _config(num_workers=2))
  it = iter(ds)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(2)]
  fresh, _ = pipeline.build([g3, g2], _config(num_workers=2))
  restored = iter(fresh)
  restored.set_state(state)
  for want in expected:
    got = next(restored)
    assert _ids(got) == _ids(want)
    np.testing.assert_array_equal(got['img'], want['img'])


def test_evaluation_reads_every_sample_once_and_marks_padding(readers):
  g3, _ = readers
  ds, source = pipeline.build([g3], _config(local_batch=4, num_epochs=1), train=False)
  batches = list(ds)
  ids = [i for b in batches for i in _ids(b)]
  valid = np.concatenate([b['sample_valid'] for b in batches])
  assert source.steps_per_epoch == 2 and len(ids) == 8
  assert ids[:5] == [(0, i) for i in range(5)] and valid.tolist() == [1] * 5 + [0] * 3
  assert 'ann_id' in batches[0] and not batches[0]['do_flip'].any()


def test_bad_image_names_the_file_or_is_counted(readers, tmp_path):
  bad = FakeReader(tmp_path / 'bad', 4, seed=9)
  with open(bad.records[2]['img_path'], 'wb') as f:
    f.write(b'not an image')
  ds, _ = pipeline.build([[bad]], _config(local_batch=4, num_epochs=1), train=False)
  with pytest.raises(pipeline.DataError, match=r'Fake2D\[2\].*Fake2D_0002\.png'):
    next(iter(ds))
  ds, _ = pipeline.build([[bad]], _config(local_batch=4, num_epochs=1, skip_bad_samples=True),
                         train=False)
  batch = next(iter(ds))
  assert batch['num_skipped'].tolist() == [0, 0, 1, 0]
  assert batch['index'].tolist() == [0, 1, 3, 3]


def test_too_few_samples_for_a_batch_is_a_clear_error(readers):
  g3, _ = readers
  with pytest.raises(ValueError, match='fewer than one global batch'):
    pipeline.build([g3], _config(local_batch=8))
