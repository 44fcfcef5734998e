"""MPI-INF-3DHP: a 3D training set (upstream: data/MPI_INF_3DHP/MPI_INF_3DHP.py).

Files under `<data_root>/MPI_INF_3DHP/data/` (upstream's layout):

  MPI-INF-3DHP_1k.json            COCO: images (id, file_name, width, height,
                                  subject_idx, seq_idx, frame_idx, cam_idx),
                                  annotations (id, image_id, bbox xywh)
  MPI-INF-3DHP_camera_1k.json     [subject][seq][cam] = {R 3x3, t (3,) mm, focal, princpt}
  MPI-INF-3DHP_joint_3d.json      [subject][seq][frame] = (17, 3) world mm
  MPI-INF-3DHP_SMPLX_NeuralAnnot.json
                                  [subject][seq][frame] = {root_pose, body_pose, shape,
                                  trans}, world frame
  images_1k/S{subject}/Seq{seq}/imageSequence/<file_name>

Every frame with frame_idx % 3 == 0 is kept (25 -> 8.3 fps); the split is
ignored, as upstream ignores it. Records are built as Human3.6M's (metres,
pelvis-relative joint_cam, discretised depth, joint_valid all ones, world-frame
fit with cam_R / cam_t in metres).

Upstream as committed is broken in two ways this reader does not inherit:
- `__getitem__` ends with `return inputs, targets,` and so drops meta_info
  (quirk Q16): irrelevant here, a record carries everything and the shared
  transform builds the example.
- The code opens `MPI-INF-3DHP_SMPLX_NeuralAnnot.json` while the README lists
  `MPI-INF-3DHP_SMPL_NeuralAnnot.json`. Both names are accepted (the SMPLX one
  first); the content must be SMPL-X parameters either way.
Upstream looks the fit up only after the box check, so a dropped box needs no
fit; a missing entry otherwise raises a ValueError naming file and image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from h4w_datasets import db as dbm
from h4w_datasets import example as ex
from h4w_datasets import human36m as h36m
from h4w_datasets import preprocessing as pre
from h4w_datasets import synthetic

JOINT_NAMES = ('Head_top', 'Neck', 'R_Shoulder', 'R_Elbow', 'R_Wrist', 'L_Shoulder', 'L_Elbow',
               'L_Wrist', 'R_Hip', 'R_Knee', 'R_Ankle', 'L_Hip', 'L_Knee', 'L_Ankle', 'Pelvis',
               'Torso', 'Head')
INFO = dbm.DatasetInfo(
    name='MPI_INF_3DHP', joint_names=JOINT_NAMES,
    flip_pairs=((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13)), is_3d=True,
    smplx_rotation_invalid=dbm.BODY_FIT_ROTATION_INVALID,
    smplx_joint_invalid=dbm.BODY_FIT_JOINT_INVALID,
    hand_face_box_dummy=dbm.ZERO_BOX)
ROOT = JOINT_NAMES.index('Pelvis')
FRAME_STRIDE = 3

ANNOT_FILE = 'MPI-INF-3DHP_1k.json'
CAMERA_FILE = 'MPI-INF-3DHP_camera_1k.json'
JOINT_FILE = 'MPI-INF-3DHP_joint_3d.json'
# The name upstream's code opens, then the name its README gives.
FIT_FILES = ('MPI-INF-3DHP_SMPLX_NeuralAnnot.json', 'MPI-INF-3DHP_SMPL_NeuralAnnot.json')


class MPI_INF_3DHP:  # pylint: disable=invalid-name  (upstream's class name)
  """upstream: MPI_INF_3DHP(transform, data_split); records instead of tensors.

  Args:
    data_root: the folder that holds `MPI_INF_3DHP/`.
    split: 'train' or 'test'; both give the same records (upstream ignores it).
  Attributes: info, fit_file (the fit file found), num_dropped ({'frame', 'bbox'}).
  """

  def __init__(self, data_root: os.PathLike, split: str = 'train'):
    if split not in ('train', 'test'):
      raise ValueError(f"MPI_INF_3DHP: split must be 'train' or 'test', got {split!r}")
    self.info = INFO
    self.split = split
    data_dir = Path(data_root) / 'MPI_INF_3DHP' / 'data'
    annot_path = data_dir / ANNOT_FILE
    candidates = [data_dir / name for name in FIT_FILES]
    found = [p for p in candidates if p.exists()]
    if not found:
      raise FileNotFoundError('MPI_INF_3DHP: no fit file; looked for '
                              + ' and '.join(str(p) for p in candidates))
    self.fit_file = found[0]
    data = h36m.read_json(annot_path)
    cameras = h36m.read_json(data_dir / CAMERA_FILE)
    joints = h36m.read_json(data_dir / JOINT_FILE)
    fits = h36m.read_json(self.fit_file)
    with dbm.malformed(annot_path, ' (COCO-style images and annotations expected)'):
      images = {img['id']: img for img in data['images']}
      annotations = list(data['annotations'])
    self.num_dropped = {'frame': 0, 'bbox': 0}
    rows, seen_ids = [], set()
    for k, ann in enumerate(annotations):
      with dbm.malformed(annot_path, f' annotation #{k} (or its camera, joints or fit)'):
        record = self._parse(ann, images, cameras, joints, fits, data_dir, annot_path,
                             seen_ids)
      if record is not None:
        rows.append(record)
    self._table = h36m.stack_rows(rows, INFO.num_joints)
    h36m.log_loaded('MPI_INF_3DHP', split, len(rows), self.num_dropped)

  def _parse(self, ann, images, cameras, joints, fits, data_dir, annot_path, seen_ids):
    ann_id, img, where = h36m.checked_annotation(ann, images, annot_path, seen_ids)
    try:
      subject, seq, frame, cam_idx = (img[k] for k in ('subject_idx', 'seq_idx', 'frame_idx',
                                                      'cam_idx'))
      file_name = img['file_name']
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f'{where}: image entry lacks {e}') from e
    shape = dbm.image_shape(img, where)
    if frame % FRAME_STRIDE != 0:
      self.num_dropped['frame'] += 1
      return None
    cam = h36m.lookup(cameras, (subject, seq, cam_idx), f'{data_dir / CAMERA_FILE} for {where}')
    if not isinstance(cam, Mapping):
      raise ValueError(f'{data_dir / CAMERA_FILE} for {where}: camera entry is not an object')
    cam_R = h36m.as_array(cam.get('R'), (3, 3), where, 'camera R')
    cam_t = h36m.as_array(cam.get('t'), (3,), where, 'camera t')
    focal = h36m.as_array(cam.get('focal'), (2,), where, 'camera focal')
    princpt = h36m.as_array(cam.get('princpt'), (2,), where, 'camera princpt')
    joint_world = h36m.as_array(
        h36m.lookup(joints, (subject, seq, frame), f'{data_dir / JOINT_FILE} for {where}'),
        (len(JOINT_NAMES), 3), where, 'joint_3d')
    joint_img, joint_cam = h36m.world_joints_to_record(joint_world, cam_R, cam_t, focal,
                                                       princpt, ROOT)
    bbox = pre.process_bbox(np.array(ann['bbox']), shape[1], shape[0], where=f'{where} bbox')
    if bbox is None:
      self.num_dropped['bbox'] += 1
      return None
    fit_where = f'{self.fit_file} for {where}'
    fit = h36m.lookup(fits, (subject, seq, frame), fit_where)
    record = ex.empty_record(INFO.num_joints)
    record.update(h36m.smplx_fit_fields(fit, fit_where))
    img_path = data_dir / 'images_1k' / f'S{subject}' / f'Seq{seq}' / 'imageSequence' / file_name
    record.update(
        img_path=str(img_path.absolute()), img_shape=np.array(shape, np.int32),
        bbox=bbox, joint_img=joint_img, joint_cam=joint_cam,
        joint_valid=np.ones((len(JOINT_NAMES), 1), np.float32),
        cam_focal=focal, cam_princpt=princpt, cam_R=cam_R, cam_t=cam_t / 1000,
        ann_id=np.int64(ann_id), img_id=np.int64(ann['image_id']))
    ex.check_record(record, INFO.num_joints, where)
    return record

  def __len__(self) -> int:
    return len(self._table['img_path'])

  def __getitem__(self, i: int) -> dict[str, Any]:
    return h36m.record_at(self._table, i)


def write_synthetic(data_root, human_model_path, *, num: int = 8, seed: int = 0) -> Path:
  """Write a mini MPI-INF-3DHP from rendered scenes; returns `data_root/MPI_INF_3DHP`.

  One annotation per scene (ann_id = image id = 100 * k + scene) on frame
  3 * (k + 1), subjects 1..8 and sequences 1..2 in turn, cameras 0..3; plus a
  frame off the stride (dropped) and a zero-width box (dropped, written
  without a fit since upstream never looks it up). Cameras are random rigid
  motions with the nominal intrinsics, as in the Human3.6M writer; joints (mm)
  and fits are in their world frame. The fit file gets upstream's code name
  (`FIT_FILES[0]`).
  """
  if not 0 < num < 100:
    raise ValueError(f'num must be in 1..99, got {num}')
  data_dir = Path(data_root) / 'MPI_INF_3DHP' / 'data'
  head_ids = h36m.head_top_vertex_ids(human_model_path)
  scenes = synthetic.render_scenes(human_model_path, num, seed=seed,
                                   image_shape=h36m.SYNTHETIC_IMAGE_SHAPE)
  focal, princpt = h36m.nominal_intrinsics()
  rng = np.random.default_rng(seed + 11)
  plan = [(i, 'keep') for i in range(num)] + [(0, 'frame'), (min(1, num - 1), 'bbox')]
  images, annotations, cameras, joints, fits = [], [], {}, {}, {}
  for k, (i, kind) in enumerate(plan):
    scene = scenes[i]
    subject, seq, cam = 1 + k % 8, 1 + (k // 8) % 2, k % 4
    frame = FRAME_STRIDE * (k + 1) + (1 if kind == 'frame' else 0)
    cam_key = (str(subject), str(seq), str(cam))
    if cam_key not in cameras:
      cam_R, cam_t = h36m.random_camera(rng)
      cameras[cam_key] = {'R': cam_R.tolist(), 't': cam_t.tolist(), 'focal': focal.tolist(),
                          'princpt': princpt.tolist()}
    cam_R, cam_t = np.array(cameras[cam_key]['R']), np.array(cameras[cam_key]['t'])
    ann_id = 100 * k + i
    file_name = f'img_{cam}_{frame:06d}.jpg'
    image = h36m.reproject_image(scene, focal, princpt)
    h36m.write_image(data_dir / 'images_1k' / f'S{subject}' / f'Seq{seq}' / 'imageSequence'
                     / file_name, image)
    images.append({'id': ann_id, 'file_name': file_name, 'width': image.shape[1],
                   'height': image.shape[0], 'subject_idx': subject, 'seq_idx': seq,
                   'frame_idx': frame, 'cam_idx': cam})
    bbox = h36m.tight_box(scene, focal, princpt)
    if kind == 'bbox':
      bbox[2] = 0.0
    annotations.append({'id': ann_id, 'image_id': ann_id, 'bbox': bbox})
    joint_world = synthetic.cam_to_world(h36m.scene_joints(scene, JOINT_NAMES, head_ids) * 1000,
                                         cam_R, cam_t)
    key = (str(subject), str(seq), str(frame))
    h36m.nested_set(joints, key, joint_world.astype(np.float32).tolist())
    if kind != 'bbox':
      h36m.nested_set(fits, key, h36m.world_fit(scene, cam_R, cam_t / 1000))
  h36m.write_json(data_dir / ANNOT_FILE, {'images': images, 'annotations': annotations})
  camera_tree = {}
  for cam_key, entry in cameras.items():
    h36m.nested_set(camera_tree, cam_key, entry)
  h36m.write_json(data_dir / CAMERA_FILE, camera_tree)
  h36m.write_json(data_dir / JOINT_FILE, joints)
  h36m.write_json(data_dir / FIT_FILES[0], fits)
  return data_dir.parent

