"""Training checkpoints: the train state and the data iterator, saved together (orbax).

Each step's checkpoint holds `state` (params, batch_stats, opt_state, step,
rng; sharded arrays written by every process) and `data` (each process's
grain iterator state as JSON). orbax writes into a temporary folder and
renames it when complete, so a run killed mid-save leaves the previous
checkpoint as the latest; `restore_latest` only sees finished ones. Saves are
asynchronous: the step loop goes on while the files are written.

To hand weights to the converter (`python -m h4w_jax.convert --to-torch`) or
the Predictor, `export_variables` writes the converter's checkpoint format.
"""

from __future__ import annotations

from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp

from h4w_jax.weights import files


class Manager:
  """orbax CheckpointManager for (state, data iterator); keeps the last `keep`."""

  def __init__(self, directory, *, keep: int = 3, async_save: bool = True):
    self.directory = Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'data': grain.checkpoint.CheckpointHandler()})

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step: int, state, data_iterator) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)))

  def restore_latest(self, abstract_state, shardings, data_iterator):
    """The latest state (placed with `shardings`), restoring `data_iterator` in place;
    None when there is no checkpoint yet."""
    step = self._manager.latest_step()
    if step is None:
      return None
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract_state, shardings)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target),
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return restored['state']

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def export_variables(state, directory, epoch: int | None, **notes):
  """{'params', 'batch_stats'} of a train state in the converter's format (process 0)."""
  variables = {'params': jax.device_get(state.params),
               'batch_stats': jax.device_get(state.batch_stats)}
  return files.save_checkpoint(directory, variables, epoch, notes=notes)


def main(argv=None) -> int:
  """`python -m h4w_jax.checkpointing export WORKDIR OUT [--step N]`: a training run's
  weights in the converter's format (for the demo, the Predictor, `convert --to-torch`)."""
  import argparse
  parser = argparse.ArgumentParser(description=main.__doc__.split('\n\n')[0])
  parser.add_argument('command', choices=['export'])
  parser.add_argument('workdir', type=Path, help='a train.py --workdir (or its checkpoints/)')
  parser.add_argument('out', type=Path, help='a new folder for the exported weights')
  parser.add_argument('--step', type=int, default=None, help='default: the newest checkpoint')
  args = parser.parse_args(argv)
  directory = args.workdir / 'checkpoints' if (args.workdir / 'checkpoints').is_dir() \
      else args.workdir
  step, state = files.load_latest_state(directory, args.step)
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  files.save_checkpoint(args.out, variables, None, source=str(directory),
                          notes={'train_step': int(step)})
  print(f'exported step {step} of {directory} to {args.out}')
  return 0


if __name__ == '__main__':
  import sys
  sys.exit(main())
