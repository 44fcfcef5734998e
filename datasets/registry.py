"""Readers by upstream's dataset names, for configs ('Human36M', 'MSCOCO', ...).

The task picks the table, as upstream's `cfg.parts`: 'wholebody' (the main
branch's readers) or 'hand' (stage 2's FreiHAND, InterHand26M and MSCOCO hands).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Mapping, Sequence

from h4w_datasets.synthetic import TASK_MODULES

NAMES = tuple(TASK_MODULES['wholebody'])
HAND_NAMES = tuple(TASK_MODULES['hand'])


def make_reader(name: str, data_root: os.PathLike, split: str, task: str = 'wholebody',
                **options):
  """upstream: `eval(name)(transform, split)` with data under `data_root/<name>/`.

  A name ending in `.json` is an ArrayRecord manifest written by
  `h4w_datasets.array_record` and read through the same pipeline.
  """
  if str(name).endswith('.json'):
    from h4w_datasets import array_record
    return array_record.ArrayRecordReader(Path(data_root) / name)
  if task not in TASK_MODULES:
    raise ValueError(f'unknown task {task!r}; known: {", ".join(TASK_MODULES)}')
  modules = TASK_MODULES[task]
  if name not in modules:
    raise ValueError(f'unknown {task} dataset {name!r}; known: {", ".join(modules)} '
                     '(or an ArrayRecord manifest .json)')
  if not (Path(data_root) / name).is_dir():
    raise FileNotFoundError(
        f'dataset {name}: {Path(data_root) / name} does not exist. Put upstream\'s data/{name} '
        f'folder there (see README, "Datasets"), or write a synthetic mini version with '
        f'`python -m h4w_datasets.synthetic {data_root} --task {task} --datasets {name}`')
  module = importlib.import_module(f'h4w_datasets.{modules[name]}')
  return getattr(module, name)(data_root, split, **options)


def make_groups(data_root: os.PathLike, trainset_3d: Sequence[str], trainset_2d: Sequence[str],
                options: Mapping[str, Mapping] | None = None, split: str = 'train',
                task: str = 'wholebody'):
  """upstream Trainer: [3D group, 2D group] of readers (empty groups dropped later)."""
  options = options or {}
  make = lambda name: make_reader(name, data_root, split, task, **dict(options.get(name, {})))
  return [[make(n) for n in trainset_3d], [make(n) for n in trainset_2d]]
