"""upstream's stage tools (`tool/*.py`) on our checkpoints, and the backbone imports.

`reset_epoch` and `merge_hand` follow `tool/reset_epoch.py` and
`tool/merge_hand_to_all.py`; `import_pose_resnet` follows
`tool/convert_simple_to_pose2pose.py`; `import_torchvision_resnet` takes
torchvision's ImageNet weights (SPEC_MODEL.md section 14).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from h4w_jax.models import hand4whole as model_lib
from h4w_jax.weights.files import (is_hand_state_dict, load_checkpoint, read_state_dict,
                                   save_checkpoint)
from h4w_jax.weights.keys import PREFIX, graft, shapes, subtree, torch_to_flax

# ---------------------------------------------------------------------------
# Stage tools (upstream tool/*.py)
# ---------------------------------------------------------------------------

HAND_BACKBONE = ('hand_roi_net', 'backbone')
# merge_hand_to_all.py deletes these from the whole-body snapshot: stage 3
# starts them from their train-mode init (missing keys under strict=False).
REINITIALISED = ('hand_position_net', 'hand_rotation_net')
# Hand-snapshot prefix that merge_hand_to_all.py copies; our and Pose2Pose's
# hand snapshots use the second one (quirk Q12).
HAND_PREFIX = 'module.hand_backbone.'
POSE2POSE_PREFIX = 'module.backbone.'


def reset_epoch(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
  """tool/reset_epoch.py on our checkpoints: a copy of `src` with epoch 0."""
  variables, meta = load_checkpoint(src)
  notes = {k: v for k, v in meta.items()
           if k not in ('format', 'epoch', 'source', 'num_batches_tracked')}
  return save_checkpoint(dst, variables, 0, source=src,
                         num_batches_tracked=meta.get('num_batches_tracked'), notes=notes)


def hand_backbone_state(hand_state_dict: Mapping[str, Any], fix_prefix: bool = False,
                        where: str = 'hand snapshot') -> dict[str, Any]:
  """The hand backbone's keys of a hand snapshot, with the prefix removed.

  Upstream copies keys containing `module.hand_backbone`; keys under
  `module.backbone.` (what Pose2Pose's hand model and our stage 2 save) count
  as well when the state dict is recognisably the hand-only model (its
  position_net and rotation_net pose heads are there) or with `fix_prefix`.
  Raises ValueError if none match, where upstream silently copies nothing.
  """
  fix_prefix = fix_prefix or is_hand_state_dict(hand_state_dict)
  prefixes = [HAND_PREFIX] + ([POSE2POSE_PREFIX] if fix_prefix else [])
  found = {p: {k[len(p):]: v for k, v in hand_state_dict.items() if k.startswith(p)}
           for p in prefixes}
  found = {p: keys for p, keys in found.items() if keys}
  if not found:
    tops = sorted({k.removeprefix(PREFIX).split('.')[0] for k in hand_state_dict})
    hint = '' if fix_prefix else '; pass fix_prefix (--fix-prefix) to take module.backbone.*'
    raise ValueError(f'{where}: no key starts with {" or ".join(prefixes)} '
                     f'(its modules: {tops}){hint}')
  if len(found) > 1:
    raise ValueError(f'{where}: has both {" and ".join(found)} keys; which one is the '
                     'hand backbone is ambiguous')
  return next(iter(found.values()))


def merge_hand(body: Mapping, hand_state_dict: Mapping[str, Any], init_variables: Mapping, *,
               fix_prefix: bool = False, where: str = 'hand snapshot') -> dict:
  """tool/merge_hand_to_all.py: the stage-3 start from stage-1 and stage-2 weights.

  Args:
    body: variables of the whole-body model after stage 1.
    hand_state_dict: the hand model's state dict (torch keys; from
      `read_state_dict`). Its backbone (see `hand_backbone_state`) must fill
      the whole hand RoI backbone.
    init_variables: variables of a freshly (train-mode) initialised model;
      only `REINITIALISED` are taken from it. Upstream deletes those heads
      from the body snapshot so that stage 3 keeps their init.
    fix_prefix: also take hand keys under `module.backbone.` (quirk Q12).
  Returns:
    The merged variables (the caller saves them with epoch 0).
  """
  hand = hand_backbone_state(hand_state_dict, fix_prefix, where)
  target = shapes(subtree(body, HAND_BACKBONE))
  merged = graft(body, HAND_BACKBONE, torch_to_flax(hand, target, where))
  for name in REINITIALISED:
    merged = graft(merged, (name,), subtree(init_variables, (name,)))
  return merged


def initial_hand_variables(model_cfg, rng, *, checkpoint: str = '', hand_backbone: str = '',
                           body_backbone: str = '', face_backbone: str = '') -> dict:
  """The hand-only model's starting weights (stage 2, config.init): all of them from
  `checkpoint` (a converted folder, a training workdir or an upstream hand snapshot
  .pth.tar), else upstream's get_model('train'): init_weights on the heads and
  torchvision's ImageNet ResNet for the backbone (`hand_backbone`, e.g.
  resnet50-11ad3fa6.pth, IMAGENET1K_V2 as upstream). The whole-body model's body and
  face backbones have no place in it: giving one is an error, not ignored."""
  from h4w_jax.models import hand_only
  if body_backbone or face_backbone:
    raise ValueError('the hand-only model (stage 2) has one backbone: give it as '
                     'init.hand_backbone, not init.body_backbone / init.face_backbone')
  target_shapes = hand_only.variable_shapes(model_cfg)
  if checkpoint:
    path = Path(checkpoint)
    return torch_to_flax(read_state_dict(path), target_shapes, str(path))
  variables = hand_only.upstream_init(rng, model_cfg)
  if hand_backbone:
    part, dropped = import_torchvision_resnet(read_state_dict(hand_backbone), 0,
                                              subtree(target_shapes, ('backbone',)),
                                              str(hand_backbone))
    print(f'init: backbone from {hand_backbone} (dropped {len(dropped)} head keys)')
    variables = graft(variables, ('backbone',), part)
  return variables


def resnet_shapes(depth: int) -> dict:
  """Variable shapes of our torchvision-named ResNet backbone (`h4w_jax.models.resnet`)."""
  import jax
  import jax.numpy as jnp
  from h4w_jax.models import resnet
  module = resnet.ResNetBackbone(depth)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                            train=False))


def _import_backbone(state_dict: Mapping[str, Any], drop: Sequence[str], target: Mapping,
                     where: str) -> tuple[dict, list[str]]:
  plain = {k.removeprefix(PREFIX): v for k, v in state_dict.items()}
  dropped = [k for k in plain if k.startswith(tuple(drop))]
  kept = {k: v for k, v in plain.items() if not k.startswith(tuple(drop))}
  return torch_to_flax(kept, target, where), dropped


def import_torchvision_resnet(state_dict: Mapping[str, Any], depth: int,
                              target: Mapping | None = None,
                              where: str = 'torchvision ResNet') -> tuple[dict, list[str]]:
  """ImageNet weights of torchvision's resnet18/50 -> one backbone's variables.

  Args:
    state_dict: torchvision keys (`conv1.weight`, `layer1.0.conv1.weight`,
      ..., `fc.*`), optionally with the `module.` prefix.
    depth: 18 or 50.
    target: the backbone's variable shapes; default `resnet_shapes(depth)`.
  Returns:
    ({'params', 'batch_stats'} of the backbone, the dropped keys: `fc.*`,
    the classifier, which the backbone does not have).
  """
  return _import_backbone(state_dict, ('fc.',), target or resnet_shapes(depth), where)


def import_pose_resnet(state_dict: Mapping[str, Any], target: Mapping | None = None,
                       where: str = 'pose ResNet') -> tuple[dict, list[str]]:
  """tool/convert_simple_to_pose2pose.py: SimpleBaseline's ResNet-50 -> body backbone.

  Upstream renames every key to `module.backbone.<key>` and loads with
  strict=False, so `deconv_layers.*` and `final_layer.*` (the 2D heatmap
  head) are silently ignored; here they are dropped and returned.

  Returns:
    ({'params', 'batch_stats'} of the backbone, the dropped keys).
  """
  return _import_backbone(state_dict, ('deconv_layers.', 'final_layer.'),
                          target or resnet_shapes(50), where)


def initial_variables(model_cfg, rng, *, checkpoint: str = '', body_backbone: str = '',
                      hand_backbone: str = '', face_backbone: str = '') -> dict:
  """A training run's starting weights (config.init): all of them from `checkpoint` (a
  converted folder or an upstream .pth.tar), else upstream's head init with the backbones
  grafted from SimpleBaseline's pose ResNet and torchvision's ImageNet ResNets."""
  if checkpoint:
    path = Path(checkpoint)
    if path.is_dir():
      return load_checkpoint(path)[0]
    return torch_to_flax(read_state_dict(path), model_lib.variable_shapes(model_cfg), str(path))
  target_shapes = model_lib.variable_shapes(model_cfg)
  variables = model_lib.upstream_head_init(rng, target_shapes)
  grafts = ((('backbone',), body_backbone, import_pose_resnet),
            (('hand_roi_net', 'backbone'), hand_backbone, None),
            (('face_roi_net', 'backbone'), face_backbone, None))
  for module, path, importer in grafts:
    if not path:
      continue
    state_dict = read_state_dict(path)
    target = subtree(target_shapes, module)
    if importer is None:
      part, dropped = import_torchvision_resnet(state_dict, 0, target, str(path))
    else:
      part, dropped = importer(state_dict, target, str(path))
    print(f'init: {"/".join(module)} from {path} (dropped {len(dropped)} head keys)')
    variables = graft(variables, module, part)
  return variables
