"""AGORA result files for the official evaluation server (upstream: AGORA.evaluate).

One pickle per detected person with upstream's keys and dtypes, under
`predictions/`, named after the original image and a person id; host-side
numpy and the standard pickle writer (the files are ours, not untrusted).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from h4w_jax.common import atomic, spaces
from h4w_jax.common.dataset_constants import AGORA_IMAGE_SHAPE

def agora_save_name(img_path: str, resolution=AGORA_IMAGE_SHAPE, test_set: str = 'val') -> str:
  """upstream: AGORA.evaluate `save_name`, the original image's base name.

  The file name without its extension, less `_person_id...` for 4K crops
  (`<image>_person_id_<k>.png`) and less `_1280x720...` for 720p validation
  images; 720p test images keep their name.
  """
  if test_set not in ('val', 'test'):
    raise ValueError(f"test_set must be 'val' or 'test'; got {test_set!r}")
  name = os.path.basename(img_path)[:-4]   # upstream drops 4 characters ('.png')
  if tuple(resolution) == AGORA_IMAGE_SHAPE:
    return name.split('_person_id')[0]
  return name.split('_1280x720')[0] if test_set == 'val' else name


def agora_person_ids(save_names: Sequence[str]) -> list[int]:
  """Person ids 0, 1, ... per image, in the order the samples come.

  upstream: AGORA.evaluate on the validation set takes 1 + the largest id
  already on disk for that image (a glob), so its ids depend on the files a
  previous run left behind. Counting within the given sequence gives the ids
  upstream gives in a fresh folder, whatever the folder holds. (The test set
  uses its detection index, the datalist's `person_id`, instead.)
  """
  seen: dict[str, int] = {}
  ids = []
  for name in save_names:
    ids.append(seen.get(name, 0))
    seen[name] = ids[-1] + 1
  return ids


def agora_joints_to_original(joint_proj, bb2img_trans, resolution=AGORA_IMAGE_SHAPE):
  """Projected joints from body-heatmap units to original 3840x2160 pixels.

  upstream: AGORA.evaluate `joint_proj`: x hm -> crop pixels (x 384/6,
  y x 512/8), then the crop-to-image affine, then x 3840 / W and y 2160 / H of
  the `resolution` the crops came from.

  Args:
    joint_proj: (B, J, 2) `smplx_joint_proj` (J = 144 for AGORA).
    bb2img_trans: (B, 2, 3) crop-to-image affine (`meta_info['bb2img_trans']`).
    resolution: (H, W) of the images the crops were cut from.
  Returns:
    (B, J, 2) float64 numpy.
  """
  joint_proj = np.asarray(joint_proj)
  x = joint_proj[..., 0] / spaces.OUTPUT_HM_SHAPE[2] * spaces.INPUT_IMG_SHAPE[1]
  y = joint_proj[..., 1] / spaces.OUTPUT_HM_SHAPE[1] * spaces.INPUT_IMG_SHAPE[0]
  xy1 = np.stack([x, y, np.ones_like(x)], axis=-1)
  xy = np.einsum('bij,bkj->bki', np.asarray(bb2img_trans, np.float64), xy1)
  return xy * (AGORA_IMAGE_SHAPE[1] / resolution[1], AGORA_IMAGE_SHAPE[0] / resolution[0])


# write_agora_results: pickled key <- upstream test-output key
_AGORA_PARAMS = (('transl', 'cam_trans'), ('global_orient', 'smplx_root_pose'),
                 ('body_pose', 'smplx_body_pose'), ('left_hand_pose', 'smplx_lhand_pose'),
                 ('right_hand_pose', 'smplx_rhand_pose'), ('reye_pose', None),
                 ('leye_pose', None), ('jaw_pose', 'smplx_jaw_pose'),
                 ('expression', 'smplx_expr'), ('betas', 'smplx_shape'))
AGORA_PARAM_SIZES = {'transl': 3, 'global_orient': 3, 'body_pose': 63, 'left_hand_pose': 45,
                     'right_hand_pose': 45, 'reye_pose': 3, 'leye_pose': 3, 'jaw_pose': 3,
                     'expression': 10, 'betas': 10}


def write_agora_results(out_dir: str | os.PathLike, save_names: Sequence[str],
                        person_ids: Sequence[int], outputs: Mapping[str, np.ndarray],
                        joints) -> list[Path]:
  """One pickle per person for the AGORA server, as upstream's AGORA.evaluate.

  File `<out_dir>/<save_name>_personId_<id>.pkl` holding
  {'params': {transl (1, 3), global_orient (1, 3), body_pose (1, 63),
  left_hand_pose (1, 45), right_hand_pose (1, 45), reye_pose (1, 3) zeros,
  leye_pose (1, 3) zeros, jaw_pose (1, 3), expression (1, 10), betas (1, 10)},
  'joints': (1, J, 2)}. The parameters keep the outputs' dtype (float32 from
  the model), the zero eye poses and the joints are float64, as upstream's.
  `transl` is the virtual camera's `cam_trans`, as upstream. Unlike upstream,
  `out_dir` is created if missing and the person ids are given (see
  `agora_person_ids`); an existing file of the same name is overwritten.

  Args:
    out_dir: folder to write into.
    save_names: B image base names (`agora_save_name`).
    person_ids: B ids.
    outputs: upstream's test-output keys with (B, ...) arrays: cam_trans,
      smplx_root_pose, smplx_body_pose, smplx_lhand_pose, smplx_rhand_pose,
      smplx_jaw_pose, smplx_expr, smplx_shape.
    joints: (B, J, 2) joints in original-image pixels
      (`agora_joints_to_original`).
  Returns:
    The B paths written.
  """
  joints = np.asarray(joints, np.float64)
  num = len(save_names)
  if len(person_ids) != num or joints.shape[0] != num or joints.ndim != 3 or joints.shape[2] != 2:
    raise ValueError(f'{num} save_names need {num} person_ids and joints (B, J, 2); got '
                     f'{len(person_ids)} ids and joints {joints.shape}')
  params = {}
  for name, key in _AGORA_PARAMS:
    if key is None:
      params[name] = np.zeros((num, 1, AGORA_PARAM_SIZES[name]))
      continue
    if key not in outputs:
      raise KeyError(f'write_agora_results: outputs lack {key!r} (for {name!r})')
    value = np.asarray(outputs[key])
    if value.shape != (num, AGORA_PARAM_SIZES[name]):
      raise ValueError(f'write_agora_results: outputs[{key!r}] has shape {value.shape}; '
                       f'expected ({num}, {AGORA_PARAM_SIZES[name]})')
    params[name] = value.reshape(num, 1, -1)
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = []
  for i, (save_name, person_id) in enumerate(zip(save_names, person_ids)):
    record = {'params': {name: np.array(value[i]) for name, value in params.items()},
              'joints': joints[i].reshape(1, -1, 2)}
    path = out_dir / f'{save_name}_personId_{int(person_id)}.pkl'
    with atomic.open_for_writing(path) as f:
      pickle.dump(record, f)
    paths.append(path)
  return paths
