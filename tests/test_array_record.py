"""ArrayRecord shards: the converted dataset yields the same examples as the files."""

import numpy as np
import pytest

from h4w_datasets import array_record, pipeline
from fake_datasets import FakeReader


def test_array_record_path_yields_identical_examples(tmp_path):
  reader = FakeReader(tmp_path / 'img', 9, seed=5)
  manifest = array_record.convert(reader, tmp_path / 'ar', num_shards=3)
  converted = array_record.ArrayRecordReader(manifest, info=reader.info)
  assert len(converted) == len(reader)
  config = pipeline.PipelineConfig(seed=1, local_batch=3, num_epochs=1, read_threads=2)
  from_files, _ = pipeline.build([[reader]], config)
  from_shards, _ = pipeline.build([[converted]], config)
  n = 0
  for a, b in zip(from_files, from_shards):
    assert set(a) == set(b)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    n += 1
  assert n == 3


def test_bad_manifest_and_missing_shard_are_named(tmp_path):
  reader = FakeReader(tmp_path / 'img', 2, seed=6)
  manifest = array_record.convert(reader, tmp_path / 'ar', num_shards=2)
  shard = next((tmp_path / 'ar').glob('*-00001-of-00002'))
  shard.unlink()
  with pytest.raises(FileNotFoundError, match='00001-of-00002'):
    array_record.ArrayRecordReader(manifest, info=reader.info)
  bad = tmp_path / 'bad.json'
  bad.write_text('{')
  with pytest.raises(ValueError, match='bad.json'):
    array_record.ArrayRecordReader(bad, info=reader.info)
