"""Training checkpoints: the train state and the data iterator, saved together (orbax), checked.

Each step's checkpoint `checkpoints/<step>/` holds `state` (params,
batch_stats, opt_state, step, rng; sharded arrays written by every process),
`data` (each process's grain iterator state as JSON) and `h4w_integrity.json`
(size and SHA-256 of every other file, h4w_jax.weights.integrity). orbax
writes into a temporary folder and renames it when complete, so a run killed
mid-save leaves the previous checkpoint as the latest. Saves are asynchronous:
the step loop goes on while the files are written; the checksums are taken in
orbax's background thread once every process has finished writing (its
post-finalization callback, on process 0, which reads the whole step from
the shared checkpoint folder) and before the rename, so a step that is
visible has its checksums.

`restore_latest` takes the newest step whose files match their checksums,
whose arrays orbax can read and whose values are all finite. A step that
fails any of these is moved aside to `checkpoints/<step>.damaged-<reason>`
(nothing is deleted; orbax ignores such names), a warning names it and why,
and the next older step is tried. `python -m h4w_jax.checkpointing verify
WORKDIR` lists every step and its state without changing anything.

To hand weights to the converter (`python -m h4w_jax.convert --to-torch`) or
the Predictor, `export_variables` writes the converter's checkpoint format.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from h4w_jax.weights import files, integrity

log = logging.getLogger('h4w_jax.checkpoints')

DAMAGED = '.damaged-'
_ORBAX_TMP = '.orbax-checkpoint-tmp'
# Files orbax (re)writes at the top of a step after the checksums are taken (step metadata
# with timestamps, the commit marker): not checksummed; orbax reads them itself.
_ORBAX_REWRITES = ('_CHECKPOINT_METADATA', 'commit_success.txt')


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used: the message names the step, the file and why."""


def _agree(value: int, reduce=min) -> int:
  """The same integer on every process (`reduce` over all of them)."""
  if jax.process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils
  return int(reduce(np.asarray(multihost_utils.process_allgather(np.int32(value))).ravel()))


def nonfinite_leaves(tree, mesh=None) -> list[str]:
  """Paths of the float leaves of a (possibly sharded, multi-host) tree with NaN or Inf."""
  flat = [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
          if jnp.issubdtype(x.dtype, jnp.inexact)]
  if not flat:
    return []
  out = None if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  flags = jax.jit(lambda xs: jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs]),
                  out_shardings=out)([x for _, x in flat])
  flags = np.asarray(jax.device_get(flags))
  return [path for (path, _), ok in zip(flat, flags) if not ok]


def set_aside(folder: Path, reason: str) -> Path:
  """Renames a damaged step to `<step>.damaged-<reason>[-k]` (free name); returns the new path."""
  target = folder.with_name(f'{folder.name}{DAMAGED}{reason}')
  k = 1
  while target.exists():
    k += 1
    target = folder.with_name(f'{folder.name}{DAMAGED}{reason}-{k}')
  os.rename(folder, target)
  return target


class Manager:
  """orbax CheckpointManager for (state, data iterator) with checksums; keeps the last `keep`."""

  def __init__(self, directory, *, keep: int = 3, async_save: bool = True):
    self.directory = Path(directory).absolute()
    self._async = async_save
    self._saving: int | None = None
    # Always orbax's async checkpointer (the checksum callback needs it); a synchronous
    # manager waits after each save.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=True,
        async_options=ocp.AsyncOptions(post_finalization_callback=self._write_checksums))
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'data': grain.checkpoint.CheckpointHandler()})

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step: int, state, data_iterator) -> None:
    self._manager.wait_until_finished()   # orbax waits too; the callback must know the step
    self._saving = step
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)))
    if not self._async:
      self._manager.wait_until_finished()

  def _write_checksums(self) -> None:
    """orbax's post-finalization callback (process 0, every process done writing, before the
    temporary folder becomes `<step>`)."""
    step = self._saving
    candidates = sorted(self.directory.glob(f'{step}{_ORBAX_TMP}*')) or [self.directory / str(step)]
    integrity.write_manifest(candidates[-1], skip=_ORBAX_REWRITES)

  def restore_latest(self, abstract_state, shardings, data_iterator):
    """The newest good state (placed with `shardings`), restoring `data_iterator` in place;
    None when there is no good checkpoint. Damaged steps are set aside with a warning."""
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract_state, shardings)
    mesh = next((s.mesh for s in jax.tree.leaves(shardings)
                 if isinstance(s, jax.sharding.NamedSharding)), None)
    while (step := self._manager.latest_step()) is not None:
      reason, why, verified = self._check_files(step)
      if reason is None:
        reason, why, state = self._restore_values(step, target, mesh, data_iterator, verified)
        if reason is None:
          return state
      self._set_aside(step, reason, why)
    return None

  def _check_files(self, step):
    """(None, '', verified) when the step's files match their checksums (verified) or it has
    none, else (reason, why, False). Process 0 reads the files; every process gets its
    verdict."""
    verdict = integrity.verify(self.directory / str(step)) if jax.process_index() == 0 else None
    bad = _agree(0 if verdict is None or verdict.ok or verdict.reason == 'unverified' else 1,
                 reduce=max)
    if verdict is not None and verdict.reason == 'unverified':
      log.warning('checkpoint step %d in %s has no checksums (written before they were '
                  'recorded): its values are checked after reading', step, self.directory)
    verified = _agree(verdict is None or verdict.ok)
    if not bad:
      return None, '', bool(verified)
    return (*((verdict.reason, verdict.describe()) if verdict is not None else ('files', '')),
            False)

  def _restore_values(self, step, target, mesh, data_iterator, verified: bool):
    """(None, '', state) or (reason, why, None): orbax's errors and non-finite values.

    orbax failing on files that match their checksums is not damage but a step that does
    not fit this run (another model, sharding or data pipeline): CheckpointError, and the
    step stays where it is. Without checksums the two cannot be told apart: the step is
    set aside (renaming it back restores it).
    """
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target),
          data=grain.checkpoint.CheckpointRestore(data_iterator)))
      error = None
    except Exception as e:   # TensorStore, JSON and grain raise many types on damaged files
      restored, error = None, e
      integrity.quiet_closed_event_loop()
    if _agree(error is None) == 0:
      why = integrity.one_line(error) if error else 'another process could not read it'
      if verified:
        raise CheckpointError(
            f'checkpoint step {step} in {self.directory} is intact but does not fit this run '
            f'({why}); resume with the settings it was written with, or use a new workdir')
      return 'unreadable', why, None
    bad = nonfinite_leaves(restored['state'], mesh)
    if bad:
      more = f' (+{len(bad) - 3} more)' if len(bad) > 3 else ''
      return 'nonfinite', f'NaN or Inf in {", ".join(bad[:3])}{more}', None
    return None, '', restored['state']

  def _set_aside(self, step: int, reason: str, why: str) -> None:
    folder = self.directory / str(step)
    if jax.process_index() == 0:
      moved = set_aside(folder, reason)
      log.warning('checkpoint step %d is damaged (%s); moved it to %s and falling back to the '
                  'previous step', step, why, moved.name)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f'checkpoint step {step} set aside')
    self._manager.reload()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def export_variables(state, directory, epoch: int | None, **notes):
  """{'params', 'batch_stats'} of a train state in the converter's format (process 0)."""
  variables = {'params': jax.device_get(state.params),
               'batch_stats': jax.device_get(state.batch_stats)}
  return files.save_checkpoint(directory, variables, epoch, notes=notes)


# ---------------------------------------------------------------------------
# Command line


def describe_steps(directory: Path) -> tuple[list[str], int | None, int]:
  """(one line per entry of a checkpoints folder, newest good step, number of damaged steps).

  Reads every finished step on this host (files against checksums, then the
  arrays and their finiteness); changes nothing.
  """
  lines, good, damaged = [], None, 0
  entries = sorted((p for p in directory.iterdir() if p.is_dir()),
                   key=lambda p: (int(p.name.split('.')[0]) if p.name.split('.')[0].isdigit()
                                  else -1, p.name), reverse=True)
  for folder in entries:
    name = folder.name
    if name.isdigit():
      verdict = integrity.verify(folder)
      state = verdict.describe()
      if verdict.ok or verdict.reason == 'unverified':
        try:
          _, tree = files.load_latest_state(directory, int(name), check=False)
          bad = files.nonfinite_paths(tree)
          state += ('; values finite' if not bad else
                    f'; NaN or Inf in {", ".join(bad[:3])}' + (' ...' if len(bad) > 3 else ''))
          ok = not bad
        except Exception as e:   # noqa: BLE001  (any orbax failure is the finding)
          state += f'; unreadable ({integrity.one_line(e)})'
          ok = False
      else:
        ok = False
      damaged += not ok
      if ok and good is None:
        good = int(name)
      lines.append(f'step {name:>8}  {"good" if ok else "DAMAGED"}: {state}')
    elif DAMAGED in name:
      lines.append(f'{name:>13}  set aside earlier (a run found it damaged); delete it when no '
                   'longer needed')
    elif _ORBAX_TMP in name:
      lines.append(f'{name:>13}  an unfinished save (the run stopped while writing); orbax '
                   'ignores it')
  return lines, good, damaged


def _checkpoints_folder(workdir: Path) -> Path:
  folder = workdir / 'checkpoints' if (workdir / 'checkpoints').is_dir() else workdir
  if not folder.is_dir():
    raise CheckpointError(f'{workdir} does not exist')
  return folder


def main(argv=None) -> int:
  """`python -m h4w_jax.checkpointing {export,verify} WORKDIR ...`: export a training run's
  weights in the converter's format (for the demo, the Predictor, `convert --to-torch`), or
  list its checkpoints and whether each is good (exit 1 if any is damaged)."""
  import argparse
  parser = argparse.ArgumentParser(description=main.__doc__.split('\n\n')[0])
  parser.add_argument('command', choices=['export', 'verify'])
  parser.add_argument('workdir', type=Path, help='a train.py --workdir (or its checkpoints/)')
  parser.add_argument('out', type=Path, nargs='?',
                      help='export: a new folder for the exported weights')
  parser.add_argument('--step', type=int, default=None,
                      help='export: this step (default: the newest good checkpoint)')
  args = parser.parse_args(argv)
  try:
    directory = _checkpoints_folder(args.workdir)
    if args.command == 'verify':
      lines, good, damaged = describe_steps(directory)
      print(f'checkpoints in {directory}:')
      print('\n'.join(f'  {line}' for line in lines) or '  (none)')
      print(f'newest good step: {good}' if good is not None else 'no good step')
      return 1 if damaged else 0
    if args.out is None:
      parser.error('export needs OUT, a new folder for the weights')
    step, state = files.load_latest_state(directory, args.step)
    variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
    files.save_checkpoint(args.out, variables, None, source=str(directory),
                          notes={'train_step': int(step)})
  except (CheckpointError, files.WeightsError, FileNotFoundError, FileExistsError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'exported step {step} of {directory} to {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
