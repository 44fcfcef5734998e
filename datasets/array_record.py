"""Pod-scale reading: any reader's records, with their images, in ArrayRecord shards.

    python -m h4w_datasets.array_record DATA_ROOT OUT --dataset MSCOCO --split train [--shards 64]

Each record is stored whole (its arrays and the encoded image file's bytes) as
an uncompressed .npz blob, read back without pickle. `ArrayRecordReader` is a
reader like the others (`info`, `__len__`, `__getitem__`), so the pipeline
and the transform do not know which path they read: a converted dataset yields
the same examples as the original files (tests/test_array_record.py). Shards
are written in record order, so a record keeps its index.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from h4w_datasets import db as dbm

_FORMAT = 'h4w_datasets.array_record/1'


def serialize(record: dict) -> bytes:
  """A record -> bytes; img_path is replaced by the image file's bytes."""
  arrays = {}
  for key, value in record.items():
    if key == 'img_path':
      with open(value, 'rb') as f:
        arrays['img_bytes'] = np.frombuffer(f.read(), np.uint8)
      arrays['source_path'] = np.array(str(value))
    else:
      arrays[key] = np.asarray(value)
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def deserialize(blob: bytes) -> dict[str, np.ndarray]:
  with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
    return {key: npz[key] for key in npz.files}


def _shard_paths(out_dir: Path, stem: str, num_shards: int) -> list[Path]:
  return [out_dir / f'{stem}.array_record-{i:05d}-of-{num_shards:05d}' for i in range(num_shards)]


def convert(reader, out_dir, *, stem: str | None = None, num_shards: int = 1,
            progress_every: int = 1000) -> Path:
  """Write `reader`'s records into `num_shards` contiguous shards plus a JSON manifest."""
  from array_record.python.array_record_module import ArrayRecordWriter
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  stem = stem or reader.info.name
  total = len(reader)
  num_shards = max(1, min(num_shards, total))
  bounds = np.linspace(0, total, num_shards + 1).astype(int)
  paths = _shard_paths(out_dir, stem, num_shards)
  start = time.perf_counter()
  for shard, path in enumerate(paths):
    writer = ArrayRecordWriter(str(path), 'group_size:1')
    try:
      for index in range(bounds[shard], bounds[shard + 1]):
        writer.write(serialize(reader[index]))
        done = index + 1
        if done % progress_every == 0 or done == total:
          rate = done / max(time.perf_counter() - start, 1e-9)
          print(f'  {stem}: {done}/{total} records, {rate:.0f}/s, '
                f'ETA {(total - done) / rate:.0f} s', flush=True)
    finally:
      writer.close()
  manifest = {'format': _FORMAT, 'dataset': reader.info.name,
              'kind': getattr(reader.info, 'kind', 'wholebody'), 'num_records': total,
              'shards': [p.name for p in paths]}
  (out_dir / f'{stem}.json').write_text(json.dumps(manifest, indent=1))
  return out_dir / f'{stem}.json'


class ArrayRecordReader:
  """Records from converted shards: a drop-in for the dataset's own reader.

  manifest: the JSON that `convert` wrote. info: the dataset's DatasetInfo
  (default: INFO of the module named in the manifest).
  """

  def __init__(self, manifest, info: dbm.DatasetInfo | None = None):
    import grain
    self.manifest_path = Path(manifest)
    try:
      meta = json.loads(self.manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise ValueError(f'{self.manifest_path}: not a readable manifest: {e}') from e
    if meta.get('format') != _FORMAT:
      raise ValueError(f"{self.manifest_path}: format {meta.get('format')!r}, "
                       f'expected {_FORMAT!r}')
    paths = [self.manifest_path.parent / name for name in meta['shards']]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
      raise FileNotFoundError(f'{self.manifest_path}: missing shards {missing}')
    self.info = info or _info_of(meta['dataset'], meta.get('kind', 'wholebody'))
    self._source = grain.sources.ArrayRecordDataSource([str(p) for p in paths])
    if len(self._source) != meta['num_records']:
      raise ValueError(f"{self.manifest_path}: shards hold {len(self._source)} records, the "
                       f"manifest says {meta['num_records']}")

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    try:
      return deserialize(self._source[index])
    except (ValueError, OSError) as e:
      raise ValueError(f'{self.manifest_path}[{index}]: corrupt record: {e}') from e


def _info_of(name: str, kind: str = 'wholebody'):
  from h4w_datasets import synthetic
  modules = synthetic.TASK_MODULES.get('hand' if kind == 'hand' else 'wholebody')
  if name not in modules:
    raise ValueError(f'unknown {kind} dataset {name!r}; pass its DatasetInfo explicitly')
  return importlib.import_module(f'h4w_datasets.{modules[name]}').INFO


def main(argv: Sequence[str] | None = None) -> int:
  from h4w_datasets import synthetic
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('data_root', type=Path, help="upstream's data/ folder (holds <NAME>/)")
  parser.add_argument('out', type=Path)
  parser.add_argument('--dataset', required=True,
                      choices=sorted(set(synthetic.DATASET_MODULES)
                                     | set(synthetic.HAND_DATASET_MODULES)))
  parser.add_argument('--task', default='wholebody', choices=sorted(synthetic.TASK_MODULES),
                      help="'hand': stage 2's readers (MSCOCO hands)")
  parser.add_argument('--split', default='train')
  parser.add_argument('--shards', type=int, default=16)
  args = parser.parse_args(argv)
  modules = synthetic.TASK_MODULES[args.task]
  if args.dataset not in modules:
    parser.error(f'{args.dataset} is not a {args.task} dataset ({", ".join(modules)})')
  module = importlib.import_module(f'h4w_datasets.{modules[args.dataset]}')
  reader = getattr(module, args.dataset)(args.data_root, args.split)
  path = convert(reader, args.out, stem=f'{args.dataset}_{args.split}', num_shards=args.shards)
  print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
