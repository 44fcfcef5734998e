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


SOURCES = ('folder', 'tfds')


def make_reader(name: str, data_root: os.PathLike, split: str, task: str = 'wholebody', *,
                source: str = 'folder', tfds_data_dir: os.PathLike | str | None = None,
                **options):
  """upstream: `eval(name)(transform, split)` with data under `data_root/<name>/`.

  source: 'folder' reads upstream's files under data_root; 'tfds' reads the
    dataset built by `python -m h4w_datasets.tfds_build` from `tfds_data_dir`
    (same records, same examples; `h4w_datasets.tfds_source`).
  options: the reader's keyword options (e.g. AGORA resolution, gendered).
  """
  if task not in TASK_MODULES:
    raise ValueError(f'unknown task {task!r}; known: {", ".join(TASK_MODULES)}')
  modules = TASK_MODULES[task]
  if name not in modules:
    raise ValueError(f'unknown {task} dataset {name!r}; known: {", ".join(modules)}')
  if source == 'tfds':
    if task != 'wholebody':
      raise ValueError(f"dataset {name}: source 'tfds' covers the whole-body datasets; the "
                       f"{task} datasets read from folders (config.data.source='folder')")
    if not tfds_data_dir:
      raise ValueError(f"dataset {name}: source 'tfds' needs tfds_data_dir "
                       '(config.data.tfds_data_dir)')
    from h4w_datasets import tfds_source
    return tfds_source.TfdsReader(name, split, tfds_data_dir, **options)
  if source != 'folder':
    raise ValueError(f'data source must be one of {SOURCES}, got {source!r}')
  if not (Path(data_root) / name).is_dir():
    raise FileNotFoundError(
        f'dataset {name}: {Path(data_root) / name} does not exist. Put upstream\'s data/{name} '
        f'folder there (see README, "Datasets"), or write a synthetic mini version with '
        f'`python -m h4w_datasets.synthetic {data_root} --task {task} --datasets {name}`')
  module = importlib.import_module(f'h4w_datasets.{modules[name]}')
  return getattr(module, name)(data_root, split, **options)


def make_groups(data_root: os.PathLike, trainset_3d: Sequence[str], trainset_2d: Sequence[str],
                options: Mapping[str, Mapping] | None = None, split: str = 'train', *,
                source: str = 'folder', tfds_data_dir: os.PathLike | str | None = None,
                task: str = 'wholebody'):
  """upstream Trainer: [3D group, 2D group] of readers (empty groups dropped later)."""
  options = options or {}
  make = lambda name: make_reader(name, data_root, split, task, source=source,
                                  tfds_data_dir=tfds_data_dir, **dict(options.get(name, {})))
  return [[make(n) for n in trainset_3d], [make(n) for n in trainset_2d]]
