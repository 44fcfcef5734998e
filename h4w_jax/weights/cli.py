"""`python -m h4w_jax.convert`: upstream snapshots to our checkpoints and back, stage tools.

  python -m h4w_jax.convert SNAPSHOT.pth.tar OUT_DIR
  python -m h4w_jax.convert --to-torch CKPT_DIR OUT.pth.tar
  python -m h4w_jax.convert reset-epoch CKPT_DIR OUT_DIR
  python -m h4w_jax.convert merge-hand BODY_DIR HAND OUT_DIR --init INIT_DIR [--fix-prefix]

A snapshot is the whole-body model's (upstream's main branch, snapshot_6.pth.tar) or
the hand-only model's (the Pose2Pose branch's snapshot_12_hand.pth.tar, stage 2): the
keys tell which, and the hand model's backbone depth is read off them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Mapping, Sequence

import numpy as np

from h4w_jax.weights import stages, torch_pickle
from h4w_jax.weights.files import (check_variables, depths_str, is_hand_state_dict,
                                   load_checkpoint, load_snapshot, model_config_of,
                                   model_config_of_state_dict, read_state_dict, read_variables,
                                   save_checkpoint, save_snapshot)
from h4w_jax.weights.keys import batches_tracked, flax_to_torch, modules, shapes, torch_to_flax

# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def model_variable_shapes(config=None) -> Mapping:
  """Shapes of the model's variables (upstream's 50/50/18 backbones when `config` is None);
  the model code is imported only here."""
  from h4w_jax.models import hand4whole
  from h4w_jax.weights import files
  return files.variable_shapes(config or hand4whole.ModelConfig())


def summarize(variables: Mapping) -> list[tuple[str, int, int]]:
  """(top-level module, torch tensors, parameters) rows; tensors count BN counters."""
  rows: dict[str, list[int]] = {}
  for module, by_collection in modules(variables).items():
    row = rows.setdefault(module[0], [0, 0])
    params = by_collection.get('params', {})
    stats = by_collection.get('batch_stats', {})
    row[0] += len(params) + len(stats) + ('mean' in stats)
    row[1] += sum(int(np.prod(np.shape(v))) for v in params.values())
  return [(name, n, size) for name, (n, size) in rows.items()]


def _print_summary(variables: Mapping, epoch: int | None) -> None:
  rows = summarize(variables)
  print(f'epoch: {epoch}, backbones {depths_str(model_config_of(variables))}')
  print(f'{"module":<20} {"tensors":>8} {"parameters":>12}')
  for name, n, size in rows:
    print(f'{name:<20} {n:>8} {size:>12,}')
  print(f'{"total":<20} {sum(r[1] for r in rows):>8} {sum(r[2] for r in rows):>12,}')


def _from_torch(args) -> None:
  state_dict, epoch, extras = load_snapshot(args.snapshot)
  # The model and its backbone depths are the file's (upstream's 50/50/18, the quickstart's
  # 18/10/10, a hand-only snapshot's ResNet-50, ...).
  hand = is_hand_state_dict(state_dict)
  config = model_config_of_state_dict(state_dict, str(args.snapshot))
  variables = torch_to_flax(state_dict, model_variable_shapes(config), where=str(args.snapshot))
  save_checkpoint(args.out, variables, epoch, source=args.snapshot,
                  num_batches_tracked=batches_tracked(state_dict),
                  notes={'model': 'hand' if hand else 'wholebody'})
  if hand:
    print('the hand-only model (Pose2Pose parts=hand, stage 2)')
  _print_summary(variables, epoch)
  for name in extras:  # upstream never restores the optimizer either (quirk Q13)
    print(f'not converted: {name!r}')
  print(f'wrote {args.out}')


def _to_torch(args) -> None:
  variables, meta = load_checkpoint(args.snapshot)
  config = model_config_of(variables, str(args.snapshot))   # every variable must fit the model
  check_variables(variables, model_variable_shapes(config), args.snapshot, config)
  save_snapshot(args.out, flax_to_torch(variables, meta.get('num_batches_tracked', 0)),
                meta.get('epoch'))
  _print_summary(variables, meta.get('epoch'))
  print(f'wrote {args.out}')


def _reset_epoch(args) -> None:
  stages.reset_epoch(args.src, args.out)
  print(f'wrote {args.out} (epoch 0)')


def _merge_hand(args) -> None:
  body, _ = read_variables(args.body)
  if args.init:
    init, init_source = load_checkpoint(args.init)[0], str(args.init)
  else:
    import jax
    from h4w_jax.models import hand4whole
    heads = {c: {n: t[n] for n in stages.REINITIALISED if n in t} for c, t in shapes(body).items()}
    init = hand4whole.upstream_head_init(jax.random.key(args.seed), heads)
    init_source = f"upstream's init_weights (h4w_jax.models.hand4whole.upstream_head_init, seed {args.seed})"
  merged = stages.merge_hand(body, read_state_dict(args.hand), init, fix_prefix=args.fix_prefix,
                      where=str(args.hand))
  save_checkpoint(args.out, merged, 0, source=args.body,
                  notes={'hand_source': str(args.hand), 'reinitialised': list(stages.REINITIALISED),
                         'init_source': init_source})
  print(f'wrote {args.out} (epoch 0): hand backbone from {args.hand}, '
        f'{" and ".join(stages.REINITIALISED)} from {init_source}')


def _parser(command: str | None) -> argparse.ArgumentParser:
  prog = 'python -m h4w_jax.convert'
  if command == 'reset-epoch':
    p = argparse.ArgumentParser(f'{prog} reset-epoch',
                                description='Copy a checkpoint with epoch 0 (tool/reset_epoch.py).')
    p.add_argument('src', help='checkpoint directory')
    p.add_argument('out', help='new checkpoint directory')
    p.set_defaults(run=_reset_epoch)
  elif command == 'merge-hand':
    p = argparse.ArgumentParser(
        f'{prog} merge-hand', description='Stage-3 start (tool/merge_hand_to_all.py): the body '
        'checkpoint with the hand snapshot\'s backbone as hand_roi_net/backbone, '
        'hand_position_net and hand_rotation_net re-initialised as upstream does, epoch 0.')
    p.add_argument('body', help='whole-body checkpoint directory or training workdir (stage 1)')
    p.add_argument('hand', help="hand snapshot (.pth.tar: upstream's snapshot_12_hand), converted "
                   'checkpoint directory or training workdir (stage 2)')
    p.add_argument('out', help='new checkpoint directory')
    p.add_argument('--init', default=None,
                   help='take the re-initialised heads from this checkpoint directory '
                        "(default: upstream's train-mode init_weights, drawn here)")
    p.add_argument('--seed', type=int, default=0, help='seed of the default head init')
    p.add_argument('--fix-prefix', action='store_true',
                   help='also take the hand backbone from module.backbone.* keys (quirk Q12); '
                   'implied when HAND is recognisably the hand-only model')
    p.set_defaults(run=_merge_hand)
  else:
    p = argparse.ArgumentParser(
        prog, description='Convert an upstream snapshot to an orbax checkpoint, or back with '
        '--to-torch. Stage tools: reset-epoch, merge-hand (see their --help).')
    p.add_argument('snapshot', help='SNAPSHOT.pth.tar, or CKPT_DIR with --to-torch')
    p.add_argument('out', help='OUT_DIR, or OUT.pth.tar with --to-torch')
    p.add_argument('--to-torch', action='store_true',
                   help='write {"epoch", "network"} for upstream from a checkpoint directory')
  return p


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  command = argv[0] if argv and argv[0] in ('reset-epoch', 'merge-hand') else None
  args = _parser(command).parse_args(argv[1:] if command else argv)
  run = getattr(args, 'run', None) or (_to_torch if args.to_torch else _from_torch)
  try:
    run(args)
  except (ValueError, OSError, torch_pickle.UnsafePickleError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
