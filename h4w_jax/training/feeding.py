"""Batches on the devices ahead of the step: a background thread assembles them.

The thread takes each host batch from the input pipeline, makes the global
batch on the mesh (`common.sharding.global_batch`: one host-to-device copy per
field) and queues it, so the device never waits for the host while the queue
is full. Each batch carries the iterator state right after it: a checkpoint
must save the state of the batches the step consumed, not of the ones the
thread has read ahead (`ConsumedState`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any, Callable, Iterator, NamedTuple

from h4w_jax.common import sharding


class Fed(NamedTuple):
  batch: dict            # global jax.Arrays, batch axis split over the mesh
  local: dict            # this host's numpy slice (for pictures)
  iterator_state: Any    # the input iterator's state after this batch
  wait_seconds: float    # how long the loop waited for it


class _End(NamedTuple):
  error: BaseException | None


class Prefetcher:
  """Iterates (Fed, ...) over `iterator`'s batches, `depth` of them assembled ahead.
  `check(local_batch)` runs on each host batch first (raising names the bad field)."""

  def __init__(self, iterator: Iterator[dict], mesh, depth: int = 2,
               check: Callable[[dict], None] | None = None):
    if depth < 1:
      raise ValueError(f'prefetch depth must be >= 1, got {depth}')
    self._iterator = iterator
    self._mesh = mesh
    self._check = check
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, name='h4w-prefetch', daemon=True)
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _fill(self) -> None:
    try:
      while not self._stop.is_set():
        local = next(self._iterator)
        if self._check is not None:
          self._check(local)
        state = self._iterator.get_state()
        batch = sharding.global_batch(local, self._mesh)
        if not self._put((batch, local, state)):
          return
    except StopIteration:
      self._put(_End(None))
    except BaseException as e:   # handed to the loop's thread, raised there
      self._put(_End(e))

  def __iter__(self):
    return self

  def __next__(self) -> Fed:
    tick = time.perf_counter()
    item = self._queue.get()
    if isinstance(item, _End):
      self._queue.put(item)   # later calls end the same way
      if item.error is not None:
        raise item.error
      raise StopIteration
    batch, local, state = item
    return Fed(batch, local, state, time.perf_counter() - tick)

  def close(self) -> None:
    self._stop.set()
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    self._thread.join(timeout=10)


class ConsumedState:
  """What grain's checkpoint handler saves for an iterator: a recorded state.

  grain.checkpoint.CheckpointSave calls `get_state()` of what it is given; a
  DatasetIterator restores from the same JSON (grain's handler encodes a
  non-DatasetIterator's state as bytes and decodes it as text)."""

  def __init__(self, state):
    self._state = state

  def get_state(self) -> bytes:
    return json.dumps(self._state, indent=4).encode()
