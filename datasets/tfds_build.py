"""Build the TFDS datasets from upstream's folders, without TensorFlow.

    python -m h4w_datasets.tfds_build --dataset MPII --data_root data --data_dir tfds
        [--config full_1280x720] [--num_shards 64] [--overwrite]

data_root is upstream's data/ folder (it holds <NAME>/); the dataset lands in
DATA_DIR/h4w_<name>[/<config>]/<version>/ (dataset_info.json, features.json
and <name>-<split>.array_record-XXXXX-of-YYYYY shards), every split of the
dataset in one run. Progress per split (records/s, MiB/s of images, ETA);
a summary with the time and size at the end. `--dataset` takes several names.

(`tfds build --imports h4w_datasets.tfds_builders h4w_mpii --manual_dir data`
does the same where TensorFlow is installed: tensorflow-datasets 4.9's `tfds`
script imports TensorFlow at start-up, hence this entry point.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import tensorflow_datasets as tfds

from h4w_datasets import tfds_builders


def folder_size(path: os.PathLike) -> int:
  return sum(p.stat().st_size for p in Path(path).rglob('*') if p.is_file())


def build(dataset: str, data_root: os.PathLike, data_dir: os.PathLike, *,
          config: str | None = None, num_shards: int | None = None,
          overwrite: bool = False) -> tfds_builders.H4wBuilder:
  """Build every split of `dataset` (upstream's name, e.g. 'MPII'); returns the builder."""
  if dataset not in tfds_builders.BUILDERS:
    raise ValueError(f'unknown dataset {dataset!r}; known: {", ".join(tfds_builders.BUILDERS)}')
  builder = tfds_builders.BUILDERS[dataset](
      data_dir=os.fspath(data_dir), config=tfds_builders.builder_config(dataset, config),
      data_root=Path(data_root))
  if overwrite and Path(builder.data_dir).exists():
    shutil.rmtree(builder.data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(data_root), num_shards=num_shards, try_download_gcs=False,
      download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  return builder


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--dataset', nargs='+', required=True,
                      choices=sorted(tfds_builders.BUILDERS), help="upstream's dataset names")
  parser.add_argument('--data_root', type=Path, required=True,
                      help="upstream's data/ folder (holds <NAME>/)")
  parser.add_argument('--data_dir', type=Path, required=True, help='the TFDS data_dir to write')
  parser.add_argument('--config', default=None,
                      help='AGORA: crops_4k (default) or full_<W>x<H>, e.g. full_1280x720')
  parser.add_argument('--num_shards', type=int, default=None,
                      help='shards per split (default: TFDS picks from the size)')
  parser.add_argument('--overwrite', action='store_true',
                      help='delete and rebuild this version if it exists')
  args = parser.parse_args(argv)
  for dataset in args.dataset:
    start = time.perf_counter()
    builder = build(dataset, args.data_root, args.data_dir, config=args.config,
                    num_shards=args.num_shards, overwrite=args.overwrite)
    splits = ', '.join(f'{name} {s.num_examples} records in {s.num_shards} shards'
                       for name, s in builder.info.splits.items())
    print(f'{builder.info.full_name}: {splits}; {time.perf_counter() - start:.1f} s, '
          f'{folder_size(builder.data_dir) / 2**20:.2f} MiB in {builder.data_dir}', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
