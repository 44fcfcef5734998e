"""The grain input pipeline: mixing, host sharding, worker transforms, batches, state.

upstream: data/dataset.py MultipleDatasets and Trainer._make_batch_generator.
Each epoch draws 2 * max(|G3|, |G2|) samples from the 3D group (Human3.6M,
MPI-INF-3DHP, AGORA) and the 2D group (MSCOCO, MPII): the larger group is seen
once, the smaller one is repeated whole floor(M / |G|) times and topped up with
uniform random picks. Inside a group the datasets are concatenated. Upstream
shuffles with the DataLoader and drops the last partial batch; so do we.

Determinism: everything is a pure function of (seed, global position). The
global position g of local element l on host h (of H, local batch b) is
step * (H * b) + h * b + l % b with step = l // b, so the global batch of a
step holds the same samples whatever the number of hosts or workers, and an
iterator restored from its saved state yields the same next batch.

    source -> to_iter_dataset -> mp_prefetch(workers) -> batch(local batch)

Workers run the reader and the transform (image decode, crop, joints, boxes);
batching happens in the main process so that the order never depends on the
worker count.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from typing import Optional, Sequence

import grain
import numpy as np

from h4w_datasets import example as ex
from h4w_datasets import hand_transforms
from h4w_datasets import preprocessing as pre
from h4w_datasets import transforms as tf

log = logging.getLogger(__name__)


class DataError(ValueError):
  """Data that cannot be read: names the dataset (and the index and file of a sample)."""


# The fields every training example has, whatever its dataset (extras are dropped).
def train_keys() -> frozenset[str]:
  record = ex.empty_record(1)
  keys = {k for k in record if k not in ('joint_img', 'joint_cam', 'joint_valid')
          and not k.endswith('_bbox') and not k.endswith('_bbox_valid')}
  keys |= {'img', 'color_scale', 'img2bb_trans', 'bb2img_trans', 'rot', 'do_flip', 'joint_img',
           'joint_cam', 'joint_valid', 'joint_trunc', 'smplx_pose_mask', 'smplx_joint_mask',
           'is_3D', 'joints_from_smplx', 'dataset_id', 'index', 'num_skipped',
           'sample_valid'}
  for part in ex.HAND_FACE_PARTS:
    keys |= {f'{part}_bbox_center', f'{part}_bbox_size', f'{part}_bbox_valid'}
  return frozenset(keys)


def train_batch_spec(batch: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Shapes and dtypes of a training batch of `batch` examples as the step gets them
  (int64 ids arrive as int32: jax's default width)."""
  return {k: ((batch,) + shape, np.dtype(np.int32) if dtype == np.int64 else dtype)
          for k, (shape, dtype) in ex.example_spec().items() if k in train_keys()}


# The example contract of each kind of dataset (DatasetInfo.kind): its transform and the
# fields every training example has.
EXAMPLE_KINDS = {'wholebody': (tf.make_example, train_keys),
                 'hand': (hand_transforms.make_example, hand_transforms.train_keys)}


def kind_of(readers) -> str:
  """The one example kind of `readers` (whole-body and hand sets do not mix in a batch)."""
  kinds = {getattr(r.info, 'kind', 'wholebody') for r in readers}
  if len(kinds) != 1:
    names = {r.info.name: getattr(r.info, 'kind', 'wholebody') for r in readers}
    raise ValueError(f'datasets of different kinds cannot share batches: {names}')
  return kinds.pop()


@dataclasses.dataclass(frozen=True)
class Mixture:
  """upstream MultipleDatasets over groups of readers, as index arithmetic.

  groups: one or two sequences of readers (3D group first); with two, the
    epoch is 2 * max group size and the smaller group is repeated and topped up.
  """
  groups: tuple[tuple[object, ...], ...]

  @functools.cached_property
  def group_sizes(self) -> tuple[int, ...]:
    return tuple(sum(len(r) for r in g) for g in self.groups)

  @functools.cached_property
  def readers(self) -> tuple[object, ...]:
    return tuple(r for g in self.groups for r in g)

  @property
  def epoch_length(self) -> int:
    sizes = self.group_sizes
    return len(sizes) * max(sizes) if len(sizes) > 1 else sizes[0]

  def locate(self, position: int, rng: np.random.Generator) -> tuple[int, int]:
    """Position inside an (unshuffled) epoch -> (reader id, index in reader)."""
    sizes = self.group_sizes
    if len(sizes) > 1:
      longest = max(sizes)
      group, k = divmod(position, longest)
      size = sizes[group]
      if k >= size * (longest // size):
        local = int(rng.integers(size))   # upstream: random.randint(0, size - 1)
      else:
        local = k % size
    else:
      group, local = 0, position
    reader_id = sum(len(g) for g in self.groups[:group])
    for reader in self.groups[group]:
      if local < len(reader):
        return reader_id, local
      local -= len(reader)
      reader_id += 1
    raise IndexError(position)


@dataclasses.dataclass
class SkipCounter:
  """Counts skipped samples per reason; the train loop reports it per epoch."""
  counts: dict = dataclasses.field(default_factory=dict)

  def add(self, reason: str) -> None:
    self.counts[reason] = self.counts.get(reason, 0) + 1


class PositionSource:
  """Random-access source over local positions of one host: l -> example.

  Implements grain's RandomAccessDataSource protocol (`__len__`,
  `__getitem__`); runs inside the grain workers.
  """

  def __init__(self, mixture: Mixture, *, seed: int, local_batch: int, process_index: int,
               process_count: int, num_epochs: int, train: bool, crop_dtype=np.uint8,
               skip_bad_samples: bool = False, max_skips: int = 16,
               keys: Optional[frozenset[str]] = None):
    self.mixture = mixture
    self.seed = seed
    self.local_batch = local_batch
    self.process_index = process_index
    self.process_count = process_count
    self.global_batch = local_batch * process_count
    self.train = train
    self.crop_dtype = crop_dtype
    self.skip_bad_samples = skip_bad_samples
    self.max_skips = max_skips
    self.keys = keys
    length = mixture.epoch_length
    # drop_last: an epoch is a whole number of global batches
    self.steps_per_epoch = length // self.global_batch if train else math.ceil(
        length / self.global_batch)
    if self.steps_per_epoch == 0:
      raise ValueError(f'the datasets hold {length} samples per epoch, fewer than one global '
                       f'batch of {self.global_batch}')
    self.epoch_positions = self.steps_per_epoch * self.global_batch
    self.num_epochs = num_epochs
    self._perm_cache: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return self.num_epochs * self.steps_per_epoch * self.local_batch

  def global_position(self, local: int) -> int:
    step, j = divmod(local, self.local_batch)
    return step * self.global_batch + self.process_index * self.local_batch + j

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._perm_cache:
      if len(self._perm_cache) > 2:
        self._perm_cache.clear()
      rng = np.random.default_rng([self.seed, epoch, 0x5EED])
      self._perm_cache[epoch] = rng.permutation(self.mixture.epoch_length)
    return self._perm_cache[epoch]

  def sample_of(self, global_position: int) -> tuple[int, int, np.random.Generator, bool]:
    """(reader id, index, per-sample generator, real) of a global position.

    Evaluation reads every sample once in order; the last global batch is
    padded with copies of the last sample, marked real=False.
    """
    epoch, position = divmod(global_position, self.epoch_positions)
    rng = np.random.default_rng([self.seed, global_position])
    if not self.train:
      real = position < self.mixture.epoch_length
      reader_id, index = self.mixture.locate(min(position, self.mixture.epoch_length - 1), rng)
      return reader_id, index, rng, real
    reader_id, index = self.mixture.locate(int(self._permutation(epoch)[position]), rng)
    return reader_id, index, rng, True

  def __getitem__(self, local: int) -> dict[str, np.ndarray]:
    g = self.global_position(int(local))
    reader_id, index, rng, real = self.sample_of(g)
    reader = self.mixture.readers[reader_id]
    aug = tf.sample_aug(rng) if self.train else tf.TEST_AUG
    skipped = 0
    while True:
      where = f'{reader.info.name}[{index}]'
      try:
        record = reader[index]
        where = f"{where} ({record.get('img_path') or record.get('source_path')})"
        make_example = EXAMPLE_KINDS[getattr(reader.info, 'kind', 'wholebody')][0]
        example = make_example(record, reader.info, aug, crop_dtype=self.crop_dtype, where=where)
        break
      except (pre.ImageError, ValueError, KeyError, OSError) as e:
        if not self.skip_bad_samples:
          raise DataError(f'{where}: {e}') from e
        skipped += 1
        log.warning('skipping %s: %s', where, e)
        if skipped > self.max_skips:
          raise DataError(f'{where}: {skipped} bad samples in a row; last: {e}') from e
        index = (index + 1) % len(reader)   # deterministic replacement
    example['dataset_id'] = np.int32(reader_id)
    example['index'] = np.int64(index)
    example['num_skipped'] = np.int32(skipped)
    example['sample_valid'] = np.float32(real)
    if self.keys is not None:
      example = {k: example[k] for k in self.keys}
    return example


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  seed: int = 0
  local_batch: int = 24
  num_epochs: int = 1
  num_workers: int = 0            # 0: transforms in the main process (threads)
  worker_buffer_size: int = 2
  read_threads: int = 4
  crop_dtype: str = 'uint8'
  skip_bad_samples: bool = False  # True: replace a bad sample, count it in `num_skipped`
  # Workers hand samples over through grain's queue (pickled) unless an array has
  # at least this many bytes, when it goes through a shared-memory segment. grain
  # unlinks a segment only if closing it succeeds; on 2 cores 1 run in 5 got EBADF
  # on that close (the segment's fd was already closed under it) and left the
  # segment in /dev/shm. Pickling costs about the copy shared memory costs, so the
  # default keeps every array off shared memory; see `bench/input_pipeline.py --transport-only`.
  worker_shared_memory_min_bytes: Optional[int] = None


def make_source(mixture: Mixture, config: PipelineConfig, *, train: bool,
                process_index: int = 0, process_count: int = 1) -> PositionSource:
  return PositionSource(
      mixture, seed=config.seed, local_batch=config.local_batch, process_index=process_index,
      process_count=process_count, num_epochs=config.num_epochs, train=train,
      crop_dtype=np.dtype(config.crop_dtype), skip_bad_samples=config.skip_bad_samples,
      keys=EXAMPLE_KINDS[kind_of(mixture.readers)][1]() if train else None)


def make_dataset(source: PositionSource, config: PipelineConfig) -> grain.IterDataset:
  """grain IterDataset of local batches (dicts of numpy arrays with a leading local batch)."""
  ds = grain.MapDataset.source(source).to_iter_dataset(
      grain.ReadOptions(num_threads=config.read_threads if config.num_workers == 0 else 1,
                        prefetch_buffer_size=max(config.local_batch, 1)))
  if config.num_workers > 0:
    _mark_flags_parsed()
    min_bytes = config.worker_shared_memory_min_bytes
    ds = grain.experimental.WithOptionsIterDataset(ds, grain.experimental.DatasetOptions(
        min_shm_size=2**62 if min_bytes is None else min_bytes))
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=config.num_workers, per_worker_buffer_size=config.worker_buffer_size),
        worker_init_fn=_worker_init)
  return ds.batch(config.local_batch, drop_remainder=True)


def _mark_flags_parsed() -> None:
  # grain reads absl flags in the parent and in workers; a program that does not
  # run absl.app (pytest, notebooks, our ml_collections entry points) never parses them.
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _worker_init(worker_index: int, worker_count: int) -> None:
  del worker_index, worker_count
  _mark_flags_parsed()



def _reader_name(reader) -> str:
  info = getattr(reader, 'info', None)
  name = info.name if info is not None else type(reader).__name__
  return f'{name} {getattr(reader, "split", "")}'.strip()


def build(groups: Sequence[Sequence[object]], config: PipelineConfig, *, train: bool = True,
          process_index: int = 0, process_count: int = 1):
  """Readers grouped as upstream (3D group, 2D group) -> (IterDataset, PositionSource)."""
  mixture = Mixture(tuple(tuple(g) for g in groups if len(g)))
  if not mixture.groups:
    raise DataError('no datasets to read')
  for group, size in zip(mixture.groups, mixture.group_sizes):
    if size == 0:   # upstream's MultipleDatasets divides by it (ZeroDivisionError)
      names = ', '.join(_reader_name(r) for r in group)
      raise DataError(f'no records to train on in the group {names} (0 records): every '
                      "annotation was filtered out (see each reader's num_dropped) or the split "
                      'is empty')
  source = make_source(mixture, config, train=train, process_index=process_index,
                       process_count=process_count)
  return make_dataset(source, config), source


def close(iterator, *, thread_timeout_s: float = 10.0) -> None:
  """Stops a pipeline iterator and frees the shared memory of the batches it handed out.

  With worker processes (num_workers > 0) every array of a batch lives in a
  shared-memory segment that grain unlinks from a background thread once the
  array is garbage. A program that ends right after its last batch left up to
  a batch's worth of segments unlinked, and Python's resource tracker then
  printed "There appear to be 50 leaked shared_memory objects to clean up at
  shutdown". So: close the iterator, wait (bounded) for grain's prefetch threads
  in this process, which may still hold an element, collect the garbage, switch
  grain to unlinking synchronously and only then drain its deleting thread. In
  the other order an element dropped by a late prefetch thread went to a closed
  pool, and its segment leaked (1 in ~10 runs on a loaded 2-core machine).
  """
  import gc
  import threading
  import time
  iterator.close()
  deadline = time.monotonic() + thread_timeout_s
  for thread in threading.enumerate():
    if thread is not threading.current_thread() and thread.name.startswith('grain-'):
      thread.join(max(0.0, deadline - time.monotonic()))
  gc.collect()
  from grain._src.python.ipc import shared_memory_array   # no public way to wait for it
  pool = shared_memory_array.SharedMemoryArray._del_thread_pool
  shared_memory_array.SharedMemoryArray._disable_async_del()
  if pool is not None:
    pool.close()
    pool.join()
