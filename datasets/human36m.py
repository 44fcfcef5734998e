"""Human3.6M: the 3D training set (upstream: data/Human36M/Human36M.py).

Files under `<data_root>/Human36M/` (upstream's layout):

  annotations/Human36M_subject{S}_data.json      COCO: images (id, file_name, width,
      height, subject, action_idx, subaction_idx, frame_idx, cam_idx), annotations
      (id, image_id, bbox xywh)
  annotations/Human36M_subject{S}_camera.json    {cam_idx: {R 3x3, t (3,) mm, f (2,), c (2,)}}
  annotations/Human36M_subject{S}_joint_3d.json  {action: {subaction: {frame: (17, 3) world mm}}}
  annotations/Human36M_subject{S}_SMPLX_NeuralAnnot.json
      {action: {subaction: {frame: {root_pose, body_pose, shape, trans}}}}, world frame
  images/<file_name>
  J_regressor_h36m_smplx.npy                      (17, 10475), the evaluation regressor

Splits (upstream): train = subjects 1, 5, 6, 7, 8, every 5th frame, all cameras;
test = subjects 9, 11, every 64th frame, camera 4 only. Every kept frame needs a
fit (upstream looks it up before the camera filter, so test frames on other
cameras need one too).

A record holds what upstream's `__getitem__` computes before the shared
transforms: joint_cam in metres relative to the pelvis, joint_img = (u, v,
discretised depth), joint_valid all ones (quirk Q14). The fit stays in the
world frame; cam_R and cam_t (metres) carry the extrinsics that
`process_human_model_output` applies.

Deviations, all in error paths: a missing fit, camera or joint entry raises a
ValueError naming the file and the image instead of upstream's KeyError, and
duplicate annotation ids (pycocotools would silently keep the last) are an
error.

This module also holds the pieces the other NeuralAnnot-fitted body sets share
(MPII, MPI-INF-3DHP): reading JSON with clear errors, a fit's record fields,
world joints -> record joints, and the synthetic joints/regressor helpers.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import cv2
import numpy as np

from h4w_datasets import db as dbm
from h4w_datasets import example as ex
from h4w_datasets import preprocessing as pre
from h4w_datasets import synthetic
from h4w_jax.common import spaces
from h4w_jax.common import joint_sets as js

log = logging.getLogger(__name__)

JOINT_NAMES = ('Pelvis', 'R_Hip', 'R_Knee', 'R_Ankle', 'L_Hip', 'L_Knee', 'L_Ankle', 'Torso',
               'Neck', 'Head', 'Head_top', 'L_Shoulder', 'L_Elbow', 'L_Wrist', 'R_Shoulder',
               'R_Elbow', 'R_Wrist')
INFO = dbm.DatasetInfo(
    name='Human36M', joint_names=JOINT_NAMES,
    flip_pairs=((1, 4), (2, 5), (3, 6), (14, 11), (15, 12), (16, 13)), is_3d=True,
    smplx_rotation_invalid=dbm.BODY_FIT_ROTATION_INVALID,
    smplx_joint_invalid=dbm.BODY_FIT_JOINT_INVALID,
    hand_face_box_dummy=dbm.ZERO_BOX)
# The 14 joints upstream's evaluation compares (all but Pelvis, Torso, Head).
EVAL_JOINTS = (1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16)
ROOT = JOINT_NAMES.index('Pelvis')

SUBJECTS = {'train': (1, 5, 6, 7, 8), 'test': (9, 11)}
FRAME_STRIDE = {'train': 5, 'test': 64}
TEST_CAMERA = 4
REGRESSOR_FILE = 'J_regressor_h36m_smplx.npy'
SYNTHETIC_IMAGE_SHAPE = (240, 320)
# upstream cfg.body_3d_size (metres): the depth range of the body heatmap (as h4w_jax.models.targets).
BODY_3D_SIZE = 2.0
NUM_SMPLX_VERTICES = 10475


# ---------------------------------------------------------------- shared reader helpers

read_json = dbm.read_json   # shared by the readers that import this module


def lookup(tree: Mapping, keys: Sequence[Any], where: str) -> Any:
  """tree[str(k0)][str(k1)]...; a missing key raises ValueError naming `where` and the path."""
  node = tree
  for depth, key in enumerate(keys):
    if not isinstance(node, Mapping) or str(key) not in node:
      path = ']['.join(str(k) for k in keys[:depth + 1])
      raise ValueError(f'{where}: no entry [{path}]')
    node = node[str(key)]
  return node


def as_array(value, shape: tuple[int, ...], where: str, name: str) -> np.ndarray:
  """float32 array of an exact shape, or ValueError naming the field."""
  try:
    arr = np.asarray(value, np.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: {name!r} is not numeric: {e}') from e
  if arr.size != int(np.prod(shape)):
    raise ValueError(f'{where}: {name!r} has {arr.size} values, expected shape {shape}')
  arr = arr.reshape(shape)
  if not np.all(np.isfinite(arr)):
    raise ValueError(f'{where}: {name!r} has non-finite values')
  return arr


_FIT_REQUIRED = {'root_pose': (3,), 'body_pose': (63,), 'shape': (10,), 'trans': (3,)}


def smplx_fit_fields(param: Optional[Mapping], where: str) -> dict[str, np.ndarray]:
  """A NeuralAnnot SMPL-X parameter dict -> the record's smplx_* fields.

  upstream: the validity logic at the top of process_human_model_output. A hand
  counts when `'lhand_pose' in param and param['lhand_valid']`, the face when
  jaw_pose and expr are present and `param['face_valid']`; parts that do not
  count are stored as zeros (upstream feeds zeros to the layer). None (no fit)
  gives smplx_valid = 0 and zeros.
  """
  out = {k: np.zeros(s, np.float32) for k, s in ex.SMPLX_PARAM_SHAPES.items()}
  out.update({k: np.float32(0) for k in ex.SMPLX_FLAGS})
  out['smplx_gender'] = np.int32(0)
  if param is None:
    return out
  if not isinstance(param, Mapping):
    raise ValueError(f'{where}: the SMPL-X fit is a {type(param).__name__}, expected an object')
  for key, shape in _FIT_REQUIRED.items():
    if key not in param:
      raise ValueError(f'{where}: the SMPL-X fit has no {key!r}')
    out[f'smplx_{key}'] = as_array(param[key], shape, where, key)
  out['smplx_valid'] = np.float32(1)
  for part in ('lhand', 'rhand'):
    if f'{part}_pose' in param:
      if f'{part}_valid' not in param:
        raise ValueError(f'{where}: the SMPL-X fit has {part}_pose but no {part}_valid')
      if param[f'{part}_valid']:
        out[f'smplx_{part}_pose'] = as_array(param[f'{part}_pose'], (45,), where, f'{part}_pose')
        out[f'smplx_{part}_valid'] = np.float32(1)
  if 'jaw_pose' in param and 'expr' in param:
    if 'face_valid' not in param:
      raise ValueError(f'{where}: the SMPL-X fit has jaw_pose/expr but no face_valid')
    if param['face_valid']:
      out['smplx_jaw_pose'] = as_array(param['jaw_pose'], (3,), where, 'jaw_pose')
      out['smplx_expr'] = as_array(param['expr'], (10,), where, 'expr')
      out['smplx_face_valid'] = np.float32(1)
  gender = param.get('gender', 'neutral')
  if gender not in ex.GENDERS:
    raise ValueError(f'{where}: unknown gender {gender!r}')
  out['smplx_gender'] = np.int32(ex.GENDERS.index(gender))
  return out


def world_joints_to_record(joint_world_mm, cam_R, cam_t_mm, focal, princpt, root: int):
  """World joints (J, 3) mm -> (joint_img (J, 3), joint_cam (J, 3) metres, root-relative).

  upstream: world2cam and cam2pixel in load_data, then the head of the 3D
  sets' __getitem__: joint_cam = (joint_cam - root) / 1000 and the depth
  z_hm = (z / (body_3d_size / 2) + 1) / 2 * D. float32 throughout, as upstream.
  """
  joint_world = np.asarray(joint_world_mm, np.float32)
  joint_cam = (cam_R @ joint_world.T).T + cam_t_mm.reshape(1, 3)
  u = joint_cam[:, 0] / joint_cam[:, 2] * focal[0] + princpt[0]
  v = joint_cam[:, 1] / joint_cam[:, 2] * focal[1] + princpt[1]
  joint_cam = (joint_cam - joint_cam[root, None, :]) / 1000
  depth = (joint_cam[:, 2] / (BODY_3D_SIZE / 2) + 1) / 2.0 * spaces.OUTPUT_HM_SHAPE[0]
  joint_img = np.stack([u, v, depth], axis=1).astype(np.float32)
  return joint_img, joint_cam.astype(np.float32)


def checked_annotation(ann, images: Mapping, annot_path, seen_ids: set,
                       required: Sequence[str] = ('image_id', 'bbox')):
  """A COCO annotation's id, its image entry and a `where` for errors.

  Raises ValueError naming the file and ids for a missing field, a duplicate
  annotation id (pycocotools would keep the last silently) or an unknown image.
  """
  ann_id = ann.get('id') if isinstance(ann, Mapping) else None
  where = f'{annot_path} annotation {ann_id}'
  if ann_id is None or any(k not in ann for k in required):
    raise ValueError(f"{where}: annotation needs {', '.join(('id',) + tuple(required[:-1]))} "
                     f'and {required[-1]}')
  if ann_id in seen_ids:
    raise ValueError(f'{where}: duplicate annotation id')
  seen_ids.add(ann_id)
  img = images.get(ann['image_id'])
  if img is None:
    raise ValueError(f"{where}: image {ann['image_id']} is not in the file")
  return ann_id, img, f"{annot_path} annotation {ann_id} (image {ann['image_id']})"


def stack_rows(rows: list[dict[str, Any]], num_joints: int) -> dict[str, np.ndarray]:
  """Records -> one array per field (leading N); img_path as an object array."""
  spec = ex.record_spec(num_joints)
  table = {'img_path': np.array([r['img_path'] for r in rows], dtype=object)}
  for key, (shape, dtype) in spec.items():
    if rows:
      table[key] = np.stack([np.asarray(r[key], dtype).reshape(shape) for r in rows])
    else:
      table[key] = np.zeros((0,) + shape, dtype)
  return table


def record_at(table: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
  """Row i of a `stack_rows` table as a record (fresh arrays: callers may edit them)."""
  return {k: (str(v[i]) if k == 'img_path' else np.array(v[i])) for k, v in table.items()}


def log_loaded(name: str, split: str, kept: int, num_dropped: Mapping[str, int]) -> None:
  dropped = ', '.join(f'{k}: {v}' for k, v in num_dropped.items()) or 'none'
  log.info('%s %s: %d records; dropped %s', name, split, kept, dropped)


# ---------------------------------------------------------------- reader

class Human36M:
  """upstream: Human36M(transform, data_split); records instead of tensors.

  Args:
    data_root: the folder that holds `Human36M/`.
    split: 'train' or 'test'.
  Attributes:
    info, regressor ((17, 10475) float, the evaluation regressor),
    num_dropped ({'frame': ..., 'camera': ..., 'bbox': ...}).
  """

  def __init__(self, data_root: os.PathLike, split: str):
    if split not in SUBJECTS:
      raise ValueError(f"Human36M: split must be 'train' or 'test', got {split!r}")
    self.info = INFO
    self.split = split
    root = Path(data_root) / 'Human36M'
    annot_dir, img_dir = root / 'annotations', root / 'images'
    regressor_path = root / REGRESSOR_FILE
    if not regressor_path.exists():
      raise FileNotFoundError(f'{regressor_path}: evaluation regressor not found')
    self.regressor = np.load(regressor_path, allow_pickle=False)
    if self.regressor.shape != (len(JOINT_NAMES), NUM_SMPLX_VERTICES):
      raise ValueError(f'{regressor_path}: shape {self.regressor.shape}, expected '
                       f'{(len(JOINT_NAMES), NUM_SMPLX_VERTICES)}')

    stride = FRAME_STRIDE[split]
    self.num_dropped = {'frame': 0, 'camera': 0, 'bbox': 0}
    rows, seen_ids = [], set()
    for subject in SUBJECTS[split]:
      prefix = annot_dir / f'Human36M_subject{subject}'
      data_file = Path(f'{prefix}_data.json')
      data = read_json(data_file)
      cameras = read_json(f'{prefix}_camera.json')
      joints = read_json(f'{prefix}_joint_3d.json')
      fit_file = f'{prefix}_SMPLX_NeuralAnnot.json'
      fits = read_json(fit_file)
      with dbm.malformed(data_file, ' (COCO-style images and annotations expected)'):
        images = {img['id']: img for img in data['images']}
        annotations = list(data['annotations'])
      for k, ann in enumerate(annotations):
        with dbm.malformed(data_file, f' annotation #{k} (or its camera, joints or fit)'):
          rows.extend(self._parse(ann, images, cameras, joints, fits, stride, img_dir,
                                  data_file, prefix, fit_file, seen_ids))
    self._table = stack_rows(rows, INFO.num_joints)
    log_loaded('Human36M', split, len(rows), self.num_dropped)

  def _parse(self, ann, images, cameras, joints, fits, stride, img_dir, data_file, prefix,
             fit_file, seen_ids):
    """One annotation -> [] (filtered, counted) or [record]. Order follows upstream's checks."""
    ann_id, img, where = checked_annotation(ann, images, data_file, seen_ids)
    try:
      keys = [img[k] for k in ('subject', 'action_idx', 'subaction_idx', 'frame_idx', 'cam_idx')]
      file_name = img['file_name']
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f'{where}: image entry lacks {e}') from e
    shape = dbm.image_shape(img, where)
    _, action, subaction, frame, cam_idx = keys
    if frame % stride != 0:
      self.num_dropped['frame'] += 1
      return []
    fit = lookup(fits, (action, subaction, frame), f'{fit_file} for {where}')
    cam = lookup(cameras, (cam_idx,), f'{prefix}_camera.json for {where}')
    if self.split == 'test' and str(cam_idx) != str(TEST_CAMERA):
      self.num_dropped['camera'] += 1
      return []
    cam_R = as_array(cam.get('R'), (3, 3), where, 'camera R')
    cam_t = as_array(cam.get('t'), (3,), where, 'camera t')
    focal = as_array(cam.get('f'), (2,), where, 'camera f')
    princpt = as_array(cam.get('c'), (2,), where, 'camera c')
    joint_world = as_array(lookup(joints, (action, subaction, frame),
                                  f'{prefix}_joint_3d.json for {where}'),
                           (len(JOINT_NAMES), 3), where, 'joint_3d')
    joint_img, joint_cam = world_joints_to_record(joint_world, cam_R, cam_t, focal, princpt, ROOT)
    bbox = pre.process_bbox(np.array(ann['bbox']), shape[1], shape[0], where=f'{where} bbox')
    if bbox is None:
      self.num_dropped['bbox'] += 1
      return []
    record = ex.empty_record(INFO.num_joints)
    record.update(smplx_fit_fields(fit, f'{fit_file} for {where}'))
    record.update(
        img_path=str((img_dir / file_name).absolute()), img_shape=np.array(shape, np.int32),
        bbox=bbox, joint_img=joint_img, joint_cam=joint_cam,
        joint_valid=np.ones((len(JOINT_NAMES), 1), np.float32),
        cam_focal=focal, cam_princpt=princpt, cam_R=cam_R, cam_t=cam_t / 1000,
        ann_id=np.int64(ann_id), img_id=np.int64(ann['image_id']))
    ex.check_record(record, INFO.num_joints, where)
    return [record]

  def __len__(self) -> int:
    return len(self._table['img_path'])

  def __getitem__(self, i: int) -> dict[str, Any]:
    return record_at(self._table, i)


# ---------------------------------------------------------------- synthetic data helpers

def head_top_vertex_ids(human_model_path, count: int = 12) -> np.ndarray:
  """The `count` highest vertices of the SMPL-X template (y is up at rest): a head-top proxy."""
  with np.load(Path(human_model_path) / 'smplx' / 'SMPLX_NEUTRAL.npz', allow_pickle=False) as f:
    v_template = np.asarray(f['v_template'])
  return np.argsort(-v_template[:, 1])[:count]


# Dataset joints with no SMPL-X counterpart, from the model's own joints (144-output indices)
# or the head-top vertices: plausible stand-ins with the right anatomy.
_EXTRA_JOINT_SOURCES = {'Torso': (6,), 'Head': (15,), 'Thorax': (13, 14)}


def scene_joints(scene: synthetic.Scene, names: Sequence[str], head_top_ids) -> np.ndarray:
  """(J, 3) camera-frame metres for a dataset's joint names, from a rendered scene.

  SMPL-X names take the model's joint; Torso = Spine_2, Head = the head joint,
  Thorax = the collar midpoint, Head_top = the mean of the head-top vertices.
  """
  out = []
  for name in names:
    if name in js.JOINT_NAMES:
      out.append(scene.joints_cam[js.JOINT_IDX[js.JOINT_NAMES.index(name)]])
    elif name == 'Head_top':
      out.append(scene.vertices_cam[head_top_ids].mean(axis=0))
    elif name in _EXTRA_JOINT_SOURCES:
      out.append(scene.joints_cam[list(_EXTRA_JOINT_SOURCES[name])].mean(axis=0))
    else:
      raise ValueError(f'no synthetic source for joint {name!r}')
  return np.stack(out).astype(np.float64)


def synthetic_regressor(human_model_path, names: Sequence[str], head_top_ids) -> np.ndarray:
  """(J, 10475) regressor whose rows match `scene_joints`' sources on the rest mesh.

  Rows are the SMPL-X J_regressor rows of the same joints (uniform weights over
  the head-top vertices for Head_top): non-negative, summing to one.
  """
  with np.load(Path(human_model_path) / 'smplx' / 'SMPLX_NEUTRAL.npz', allow_pickle=False) as f:
    j_regressor = np.asarray(f['J_regressor'], np.float64)
  rows = []
  for name in names:
    if name in js.JOINT_NAMES:
      rows.append(j_regressor[js.JOINT_IDX[js.JOINT_NAMES.index(name)]])
    elif name == 'Head_top':
      row = np.zeros(j_regressor.shape[1])
      row[head_top_ids] = 1.0 / len(head_top_ids)
      rows.append(row)
    else:
      rows.append(j_regressor[list(_EXTRA_JOINT_SOURCES[name])].mean(axis=0))
  return np.stack(rows).astype(np.float32)


def random_camera(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """A world->camera rotation and a translation in mm (any rigid motion works)."""
  axis = rng.normal(size=3)
  angle = rng.uniform(0.3, 2.5)
  cam_R = synthetic._rotvec_to_matrix(axis / np.linalg.norm(axis) * angle)
  cam_t = rng.normal(0, 800, size=3) + np.array([0, 0, 4000.0])
  return cam_R.astype(np.float32), cam_t.astype(np.float32)


def world_fit(scene: synthetic.Scene, cam_R, cam_t_m) -> dict[str, list]:
  """The scene's body-only SMPL-X fit in the world frame of (cam_R, cam_t metres)."""
  root_w, trans_w = synthetic.to_world(scene.params['root_pose'], scene.params['trans'],
                                       scene.joints_cam[0], cam_R, cam_t_m)
  return {'root_pose': root_w.tolist(), 'body_pose': scene.params['body_pose'].tolist(),
          'shape': scene.params['shape'].tolist(), 'trans': trans_w.tolist()}


def tight_box(scene: synthetic.Scene, focal=None, princpt=None) -> list[float]:
  """xywh around the projected mesh, rounded to 0.01 px (floats, as the real files)."""
  focal = scene.focal if focal is None else focal
  princpt = scene.princpt if princpt is None else princpt
  xy = scene.vertices_cam[:, :2] / scene.vertices_cam[:, 2:] * focal + princpt
  x0, y0 = xy.min(axis=0)
  x1, y1 = xy.max(axis=0)
  return [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
          round(float(y1 - y0), 2)]


def write_image(path: Path, image_rgb: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  if not cv2.imwrite(str(path), image_rgb[:, :, ::-1]):
    raise OSError(f'{path}: cv2.imwrite failed')


def write_json(path: Path, obj) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(obj, f)


# ---------------------------------------------------------------- synthetic writer

def _scene_plan(split: str, num: int):
  """(scene index, subject, action, subaction, frame, cam, kind) per annotation.

  kind: 'keep', or the drop reason ('frame', 'camera', 'bbox'). Kept frames sit
  on the split's stride; the extras reuse scenes 0 and 1.
  """
  subjects, stride = SUBJECTS[split], FRAME_STRIDE[split]
  plan = []
  for i in range(num):
    if split == 'test':
      cam = TEST_CAMERA if i % 4 != 3 else 1 + (i // 4) % 3
    else:
      cam = 1 + i % 4
    kind = 'camera' if split == 'test' and cam != TEST_CAMERA else 'keep'
    plan.append((i, subjects[i % len(subjects)], 2 + i % 3, 1, stride * (i + 1), cam, kind))
  test_cam = TEST_CAMERA if split == 'test' else 1
  plan.append((0, subjects[0], 2, 2, stride * (num + 1) + 1, test_cam, 'frame'))
  plan.append((min(1, num - 1), subjects[0], 2, 2, stride * (num + 2), test_cam, 'bbox'))
  return plan


def nominal_intrinsics(image_shape=SYNTHETIC_IMAGE_SHAPE) -> tuple[np.ndarray, np.ndarray]:
  """The centre of render_scenes' intrinsics distribution: (focal (2,), princpt (2,)) pixels."""
  height, width = image_shape
  return (np.full(2, 1.6 * max(height, width), np.float32),
          np.array([width / 2, height / 2], np.float32))


def reproject_image(scene: synthetic.Scene, focal, princpt) -> np.ndarray:
  """The scene's image as a camera with other intrinsics sees it.

  Same rays, new pixels: p' = s (p - c) + c' with s = f'/f, an affine
  resample. Datasets whose cameras are shared by many frames (Human3.6M,
  MPI-INF-3DHP) use it to put every scene on the camera's intrinsics; with the
  nominal ones the scale stays within 0.91..1.11 and the body inside the frame.
  """
  scale = np.asarray(focal, np.float64) / scene.focal
  shift = np.asarray(princpt, np.float64) - scale * scene.princpt
  mat = np.array([[scale[0], 0, shift[0]], [0, scale[1], shift[1]]])
  height, width = scene.image.shape[:2]
  return cv2.warpAffine(scene.image, mat, (width, height), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT)


def write_synthetic(data_root, human_model_path, *, num: int = 8, seed: int = 0) -> Path:
  """Write a mini Human3.6M (both splits) from rendered scenes; returns `data_root/Human36M`.

  Per split `num` rendered people (train: scenes from seed, test: seed + 1),
  one annotation each, plus one off-grid frame and one zero-width box that the
  reader must drop; in the test split every 4th person is on cameras 1-3 and
  dropped too. ann_id = image id = 100000 * split (0 train, 1 test) + 100 * k
  + scene (scene < 100). Cameras per (subject, camera) are random rigid
  motions with the nominal intrinsics (images resampled onto them); joints
  (mm) and fits are written in that world frame, so the reader's world ->
  camera mapping reproduces the scene. Also writes the evaluation regressor.
  """
  if not 0 < num < 100:
    raise ValueError(f'num must be in 1..99, got {num}')
  root = Path(data_root) / 'Human36M'
  root.mkdir(parents=True, exist_ok=True)
  head_ids = head_top_vertex_ids(human_model_path)
  np.save(root / REGRESSOR_FILE, synthetic_regressor(human_model_path, JOINT_NAMES, head_ids))
  focal, princpt = nominal_intrinsics()
  rng = np.random.default_rng(seed + 7)
  for split_code, split in enumerate(('train', 'test')):
    scenes = synthetic.render_scenes(human_model_path, num, seed=seed + split_code,
                                     image_shape=SYNTHETIC_IMAGE_SHAPE)
    files = {s: {'data': {'images': [], 'annotations': []}, 'camera': {}, 'joint_3d': {},
                 'SMPLX_NeuralAnnot': {}} for s in SUBJECTS[split]}
    for s in SUBJECTS[split]:
      for cam in range(1, 5):
        cam_R, cam_t = random_camera(rng)
        files[s]['camera'][str(cam)] = {'R': cam_R.tolist(), 't': cam_t.tolist(),
                                        'f': focal.tolist(), 'c': princpt.tolist()}
    for k, (i, subject, action, subaction, frame, cam, kind) in enumerate(
        _scene_plan(split, num)):
      scene, f = scenes[i], files[subject]
      cam_R = np.array(f['camera'][str(cam)]['R'])
      cam_t = np.array(f['camera'][str(cam)]['t'])
      ann_id = 100000 * split_code + 100 * k + i
      name = f's_{subject:02d}_act_{action:02d}_subact_{subaction:02d}_ca_{cam:02d}'
      file_name = f'{name}/{name}_{frame + 1:06d}.jpg'
      image = reproject_image(scene, focal, princpt)
      write_image(root / 'images' / file_name, image)
      f['data']['images'].append({
          'id': ann_id, 'file_name': file_name, 'width': image.shape[1],
          'height': image.shape[0], 'subject': subject, 'action_idx': action,
          'subaction_idx': subaction, 'frame_idx': frame, 'cam_idx': cam})
      bbox = tight_box(scene, focal, princpt)
      if kind == 'bbox':
        bbox[2] = 0.0
      f['data']['annotations'].append({'id': ann_id, 'image_id': ann_id, 'bbox': bbox})
      joints_cam_mm = scene_joints(scene, JOINT_NAMES, head_ids) * 1000
      joint_world = synthetic.cam_to_world(joints_cam_mm, cam_R, cam_t)
      key = (str(action), str(subaction), str(frame))
      nested_set(f['joint_3d'], key, joint_world.astype(np.float32).tolist())
      nested_set(f['SMPLX_NeuralAnnot'], key, world_fit(scene, cam_R, cam_t / 1000))
    for subject, f in files.items():
      for kind, obj in f.items():
        write_json(root / 'annotations' / f'Human36M_subject{subject}_{kind}.json', obj)
  return root


def nested_set(tree: dict, keys: Sequence[str], value) -> None:
  for key in keys[:-1]:
    tree = tree.setdefault(key, {})
  tree[keys[-1]] = value
