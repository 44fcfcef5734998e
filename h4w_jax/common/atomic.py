"""Files and folders written all or nothing: a run killed mid-write leaves no half file.

Every one-time write (synthetic datasets, exported and converted checkpoints,
evaluation results) goes through here: the bytes go to a temporary name next to
the target, `<name>.partial-<pid>-<random>`, and are renamed into place when
complete (`os.replace` is atomic within one filesystem). A killed run leaves
only a `.partial-` name behind, which no reader looks for; the next writer of
the same target removes it (`remove_partials`) and writes again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Iterator

PARTIAL = '.partial-'


def partial_path(path: os.PathLike) -> Path:
  """A fresh temporary name beside `path` (same folder, so the final rename is atomic)."""
  path = Path(path)
  return path.with_name(f'{path.name}{PARTIAL}{os.getpid()}-{secrets.token_hex(3)}')


def remove_partials(path: os.PathLike) -> list[Path]:
  """Removes what killed writers of `path` left (files or folders); returns them."""
  path = Path(path)
  if not path.parent.is_dir():
    return []
  stale = sorted(path.parent.glob(f'{path.name}{PARTIAL}*'))
  for p in stale:
    if p.is_dir() and not p.is_symlink():
      shutil.rmtree(p, ignore_errors=True)
    else:
      p.unlink(missing_ok=True)
  return stale


@contextlib.contextmanager
def open_for_writing(path: os.PathLike, mode: str = 'wb') -> Iterator[IO]:
  """`with open_for_writing(p, 'w') as f:` writes p whole or not at all.

  The file appears under its name only when the block ends without an
  exception; an exception (or a kill) leaves the old file, if any, untouched.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = partial_path(path)
  try:
    with open(tmp, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_text(path: os.PathLike, text: str) -> Path:
  with open_for_writing(path, 'w') as f:
    f.write(text)
  return Path(path)


def write_bytes(path: os.PathLike, data: bytes) -> Path:
  with open_for_writing(path, 'wb') as f:
    f.write(data)
  return Path(path)


@contextlib.contextmanager
def new_folder(path: os.PathLike) -> Iterator[Path]:
  """`with new_folder(p) as tmp:` fill tmp; it becomes p when the block ends without error.

  `p` must not exist (a complete folder is never replaced). An exception
  removes tmp; a kill leaves it as `p.partial-*`, which the next call removes.
  """
  path = Path(path)
  if path.exists():
    raise FileExistsError(f'{path} already exists')
  remove_partials(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = partial_path(path)
  tmp.mkdir()
  try:
    yield tmp
    os.rename(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
