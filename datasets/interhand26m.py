"""InterHand2.6M: single hands of the multi-view captures with MANO fits (3D set of stage 2).

upstream: data/InterHand26M/InterHand26M.py (branch Pose2Pose). Files under
`data_root/InterHand26M/` (the dataset's own release layout, 5 fps or 30 fps):

  annotations/{split}/InterHand2.6M_{split}_data.json     COCO: images (id, file_name,
      width, height, capture, seq_name, camera, frame_idx), annotations (id, image_id,
      joint_valid (42), hand_type 'right' | 'left' | 'interacting')
  annotations/{split}/InterHand2.6M_{split}_camera.json   {capture: {campos|camrot|focal|
      princpt: {camera: ...}}}, campos in mm, camrot 3x3 (world -> camera)
  annotations/{split}/InterHand2.6M_{split}_joint_3d.json {capture: {frame: {'world_coord':
      (42, 3) mm}}}: the right hand's 21 joints, then the left hand's
  annotations/{split}/InterHand2.6M_{split}_MANO_NeuralAnnot.json {capture: {frame:
      {'right'|'left': {pose (48), shape (10), trans (3) m} or null}}}, world frame
  images/{split}/<file_name>

Splits 'train', 'val', 'test'. What upstream's load_data does, kept:
  * 'train' only: per (capture, sequence) the camera folders under
    images/train/Capture{c}/{seq}/ are listed (sorted names); with 10 or more,
    every (n // 10)-th is kept and annotations of other cameras are dropped
    ("too many views"). This depends on which folders exist, as upstream.
  * camera: t = -R campos (mm); joint_valid *= that hand's wrist validity;
    joint_cam = R world + t; invalid joints get joint_cam 1 mm (upstream's
    guard against a zero division); joint_img = the projection.
  * one record per hand ('interacting' gives both), skipped when the hand has
    no valid joint or its box (get_bbox of the valid joints x1.5, then
    process_bbox) is degenerate;
  * a missing or null fit is a record without a fit (mano_valid 0): its MANO
    targets and masks are 0, as upstream's dummies.
What upstream's __getitem__ does before the shared transform is done here once:
joint_cam -> wrist-relative metres, joint_img z -> that relative depth, the
joints reordered from InterHand's order (fingertip first, wrist last) to MANO's,
and t -> metres. root_cam keeps the annotated wrist (metres) for evaluation.

Fixed (upstream as committed cannot read the test split, SPEC_STAGE2 B2): the
'val' and 'test' records carry what evaluation needs (the fit for the GT mesh,
the wrist-relative GT joints, root_cam); see h4w_jax.evaluation.hand_metrics.

Deviations, in error paths: a missing camera, joint or image entry raises
ValueError naming the file and the annotation id (upstream: KeyError).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from h4w_jax.common import joint_sets as js
from h4w_jax.common import mano as mano_lib
from h4w_datasets import db as dbm
from h4w_datasets import hand_example as hx
from h4w_datasets import hand_transforms as ht
from h4w_datasets import synthetic_hands as sh
from h4w_datasets import preprocessing as pre
from h4w_datasets.human36m import checked_annotation, lookup, read_json
from h4w_datasets.mscoco import index_images

log = logging.getLogger(__name__)

INFO = hx.HandDatasetInfo(name='InterHand26M', is_3d=True)
SPLITS = ('train', 'val', 'test')
# InterHand2.6M's joint order for one hand (right: rows 0-20, left: 21-41).
JOINT_NAMES = ('Thumb_4', 'Thumb_3', 'Thumb_2', 'Thumb_1', 'Index_4', 'Index_3', 'Index_2',
               'Index_1', 'Middle_4', 'Middle_3', 'Middle_2', 'Middle_1', 'Ring_4', 'Ring_3',
               'Ring_2', 'Ring_1', 'Pinky_4', 'Pinky_3', 'Pinky_2', 'Pinky_1', 'Wrist')
ROOT = JOINT_NAMES.index('Wrist')
HAND_ROWS = {'right': np.arange(0, 21), 'left': np.arange(21, 42)}
TO_MANO = dbm.remap_index(JOINT_NAMES, js.MANO_JOINT_NAMES)
BOX_EXTEND = 1.5


def kept_cameras(img_dir: Path, capture, seq_name: str) -> set[str]:
  """upstream's train-time camera subsampling for one (capture, sequence)."""
  folder = img_dir / 'train' / f'Capture{capture}' / seq_name
  names = sorted(p.name for p in folder.glob('*')) if folder.is_dir() else []
  step = 1 if len(names) < 10 else len(names) // 10
  return set(names[::step])


def camera_of(cameras, capture, cam, where: str):
  """(R (3, 3), t (3,) mm, focal (2,), princpt (2,)) float32, upstream's t = -R campos."""
  entry = lookup(cameras, [capture], where)
  values = {k: lookup(entry, [k, cam], f'{where} camera {cam}')
            for k in ('campos', 'camrot', 'focal', 'princpt')}
  campos = hx.as_array(values['campos'], (3,), where, 'campos')
  rot = hx.as_array(values['camrot'], (3, 3), where, 'camrot')
  t = -np.dot(rot, campos.reshape(3, 1)).reshape(3)
  return (rot, t.astype(np.float32), hx.as_array(values['focal'], (2,), where, 'focal'),
          hx.as_array(values['princpt'], (2,), where, 'princpt'))


def record_from(img_path, img_shape, bbox, joint_img, joint_cam_mm, joint_valid, cam, mano_param,
                hand_type: str, ann_id, img_id, where: str) -> dict:
  """One hand as a record, from load_data's per-hand entry (InterHand order, mm).

  joint_img (21, 3): u, v pixels, z depth (mm, unused); joint_cam_mm (21, 3)
  camera frame; joint_valid (21, 1); cam = (R, t mm, focal, princpt).
  """
  rot, t_mm, focal, princpt = cam
  joint_cam_mm = np.asarray(joint_cam_mm, np.float32)
  # upstream __getitem__: root-relative, mm -> m; the depth target is that relative z
  joint_cam = (joint_cam_mm - joint_cam_mm[ROOT, None, :]) / 1000
  joint_img = np.concatenate([np.asarray(joint_img, np.float32)[:, :2], joint_cam[:, 2:]], 1)
  rec = hx.empty_record()
  rec['img_path'] = os.fspath(img_path)
  rec['img_shape'] = np.asarray(img_shape, np.int32)
  rec['bbox'] = np.asarray(bbox, np.float32)
  rec['joint_img'] = dbm.remap(joint_img, TO_MANO)
  rec['joint_cam'] = dbm.remap(joint_cam, TO_MANO)
  rec['joint_valid'] = dbm.remap(np.asarray(joint_valid, np.float32).reshape(-1, 1), TO_MANO)
  rec['root_cam'] = (joint_cam_mm[ROOT] / 1000).astype(np.float32)
  rec.update(hx.mano_fit_fields(mano_param, where))
  rec['is_left'] = np.float32(hand_type == 'left')
  rec['cam_R'] = np.asarray(rot, np.float32)
  rec['cam_t'] = (np.asarray(t_mm, np.float32) / 1000).astype(np.float32)
  rec['cam_focal'], rec['cam_princpt'] = np.asarray(focal, np.float32), np.asarray(princpt,
                                                                                  np.float32)
  rec['ann_id'], rec['img_id'] = np.int64(ann_id), np.int64(img_id)
  return rec


class InterHand26M:
  """upstream: InterHand26M(transform, data_split) as records (one per hand).

  Args:
    data_root: the folder holding `InterHand26M/`.
    split: 'train', 'val' or 'test'.
  """

  info = INFO

  def __init__(self, data_root, split: str = 'train'):
    if split not in SPLITS:
      raise ValueError(f'InterHand26M: split must be one of {SPLITS}, got {split!r}')
    self.split = split
    root = Path(data_root) / 'InterHand26M'
    annot_dir, img_dir = root / 'annotations' / split, root / 'images'
    prefix = annot_dir / f'InterHand2.6M_{split}'
    data_path = Path(f'{prefix}_data.json')
    annot = read_json(data_path)
    cameras = read_json(f'{prefix}_camera.json')
    joint_path = f'{prefix}_joint_3d.json'
    joints = read_json(joint_path)
    fit_path = f'{prefix}_MANO_NeuralAnnot.json'
    fits = read_json(fit_path)
    images = index_images(annot, data_path)

    self.num_dropped = {'camera': 0, 'no_valid_joint': 0, 'degenerate_bbox': 0}
    self.num_without_fit = 0
    kept_cams: dict = {}
    rows, seen = [], set()
    anns = annot.get('annotations') if isinstance(annot, dict) else None
    if not isinstance(anns, list):
      raise ValueError(f'{data_path}: no annotations list')
    for ann in anns:
      ann_id, img, where = checked_annotation(ann, images, data_path, seen,
                                              ('image_id', 'joint_valid', 'hand_type'))
      for key in ('capture', 'seq_name', 'camera', 'frame_idx'):
        hx.field(img, key, f'{data_path} image {ann["image_id"]}')
      capture, seq, cam, frame = img['capture'], img['seq_name'], img['camera'], img['frame_idx']
      if split == 'train':
        if (capture, seq) not in kept_cams:
          kept_cams[capture, seq] = kept_cameras(img_dir, capture, seq)
        if f'cam{cam}' not in kept_cams[capture, seq]:
          self.num_dropped['camera'] += 1
          continue
      rot, t_mm, focal, princpt = camera_of(cameras, capture, cam, f'{where} ({prefix}_camera.json)')
      joint_valid = hx.as_array(ann['joint_valid'], (42, 1), where, 'joint_valid').copy()
      joint_valid[HAND_ROWS['right']] *= joint_valid[ROOT]
      joint_valid[HAND_ROWS['left']] *= joint_valid[21 + ROOT]
      world = hx.as_array(lookup(joints, [capture, frame, 'world_coord'],
                                 f'{where} ({joint_path})'), (42, 3), where, 'world_coord')
      joint_cam = np.dot(rot, world.transpose(1, 0)).transpose(1, 0) + t_mm.reshape(1, 3)
      joint_cam[np.tile(joint_valid == 0, (1, 3))] = 1.0
      joint_img = np.stack([joint_cam[:, 0] / joint_cam[:, 2] * focal[0] + princpt[0],
                            joint_cam[:, 1] / joint_cam[:, 2] * focal[1] + princpt[1],
                            joint_cam[:, 2]], 1)
      hand_type = ann['hand_type']
      if hand_type not in ('right', 'left', 'interacting'):
        raise ValueError(f"{where}: hand_type {hand_type!r} is not 'right', 'left' or "
                         "'interacting'")
      for side in (('right', 'left') if hand_type == 'interacting' else (hand_type,)):
        rows_of = HAND_ROWS[side]
        if np.sum(joint_valid[rows_of]) == 0:
          self.num_dropped['no_valid_joint'] += 1
          continue
        bbox = pre.get_bbox(joint_img[rows_of, :2], joint_valid[rows_of, 0], BOX_EXTEND)
        bbox = ht.process_bbox(bbox, img['width'], img['height'])
        if bbox is None:
          self.num_dropped['degenerate_bbox'] += 1
          continue
        fit = fits.get(str(capture), {}).get(str(frame), {}) if isinstance(fits, dict) else {}
        fit = fit.get(side) if isinstance(fit, dict) else None
        self.num_without_fit += fit is None
        rows.append(record_from(
            img_dir / split / img['file_name'], (img['height'], img['width']), bbox,
            joint_img[rows_of], joint_cam[rows_of], joint_valid[rows_of],
            (rot, t_mm, focal, princpt), fit, side, ann_id, ann['image_id'],
            f'{where} {side} hand ({fit_path})'))
    self._table = hx.RecordTable(rows, str(data_path))
    log.info('InterHand26M %s: %d records (%d without a MANO fit), dropped %s', split,
             len(rows), self.num_without_fit, self.num_dropped)

  def __len__(self) -> int:
    return len(self._table)

  def __getitem__(self, i: int) -> dict:
    return self._table[i]


# ----------------------------------------------------------------------------- synthetic data

SYNTHETIC_IMAGE_SHAPE = (256, 168)   # InterHand2.6M's 512x334 frames, halved
NUM_CAMERAS = 12                     # >= 10 folders: the filter keeps every (12 // 10)-th = all


def _random_rotation(rng, angle: float) -> np.ndarray:
  axis = rng.normal(size=3)
  axis /= np.linalg.norm(axis)
  return cv2.Rodrigues(axis * angle)[0]


def write_synthetic(data_root, human_model_path, *, num: int = 8, seed: int = 0) -> Path:
  """A mini InterHand2.6M: `num` train images and num // 2 for each of val and test.

  One capture and sequence per split, up to NUM_CAMERAS camera folders (the
  train camera filter keeps them all, and drops the last frame, whose camera
  folder does not exist), frames with a right, left or interacting annotation
  (both hands rendered), one frame without a MANO fit for its right hand, and one
  hand with every joint invalid (dropped).
  """
  root = Path(data_root) / 'InterHand26M'
  right, left = mano_lib.mano_layers(human_model_path)
  regressor = mano_lib.joint_regressor(right).astype(np.float64)
  rng = np.random.default_rng(seed + 7)
  height, width = SYNTHETIC_IMAGE_SHAPE
  for s, (split, count) in enumerate((('train', num), ('val', max(1, num // 2)),
                                      ('test', max(1, num // 2)))):
    kinds = [('right', 'left', 'interacting')[k % 3] for k in range(count)]
    layout = [['right', 'left'] if k == 'interacting' else [k] for k in kinds]
    images_hands = sh.render_hand_images(human_model_path, layout, seed=seed + 100 * s,
                                         image_shape=SYNTHETIC_IMAGE_SHAPE)
    capture, seq = s + 1, f'ROM0{s}_synthetic'
    cams = {k: {} for k in ('campos', 'camrot', 'focal', 'princpt')}
    images, anns, joint_3d, fits = [], [], {str(capture): {}}, {str(capture): {}}
    for k, (kind, hands) in enumerate(zip(kinds, images_hands)):
      # The last train frame's camera has no image folder: the camera filter drops it.
      dropped = split == 'train' and k == count - 1
      cam = 499999 if dropped else 400000 + (k % NUM_CAMERAS)
      rot = _random_rotation(rng, rng.uniform(0.1, 0.6))
      campos_m = rng.normal(0, 0.3, 3)
      t_m = -rot @ campos_m
      cams['campos'][str(cam)] = (campos_m * 1000).tolist()
      cams['camrot'][str(cam)] = rot.tolist()
      cams['focal'][str(cam)] = hands[0].focal.tolist()
      cams['princpt'][str(cam)] = hands[0].princpt.tolist()
      frame = 1000 + k
      file_name = f'Capture{capture}/{seq}/cam{cam}/image{frame}.jpg'
      if not dropped:
        path = root / 'images' / split / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(os.fspath(path), hands[0].image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
      world = np.zeros((42, 3))
      valid = np.zeros(42)
      frame_fits = {}
      for scene in hands:
        layer = right if scene.hand_type == 'right' else left
        joints_world = (rot.T @ (scene.joints_cam.astype(np.float64) - t_m).T).T
        ih = dbm.remap(joints_world * 1000, dbm.remap_index(js.MANO_JOINT_NAMES, JOINT_NAMES))
        rows = HAND_ROWS[scene.hand_type]
        world[rows] = ih
        valid[rows] = 1
        valid[rows[rng.choice(20, 2, replace=False)]] = 0   # a couple of unlabelled joints
        fit = sh.to_world(scene, rot, t_m, regressor, layer)
        frame_fits[scene.hand_type] = None if (k == 1 and split == 'train') else fit
      if split == 'train' and k == 2:   # a hand whose every joint is invalid: dropped
        valid[HAND_ROWS['left'] if kind != 'right' else HAND_ROWS['right']] = 0
      joint_3d[str(capture)][str(frame)] = {'world_coord': world.tolist()}
      fits[str(capture)][str(frame)] = frame_fits
      img_id = k + 1
      images.append({'id': img_id, 'file_name': file_name, 'width': width, 'height': height,
                     'capture': capture, 'seq_name': seq, 'camera': str(cam), 'frame_idx': frame})
      anns.append({'id': img_id, 'image_id': img_id, 'joint_valid': valid.tolist(),
                   'hand_type': kind, 'bbox': [0, 0, width, height]})
    prefix = root / 'annotations' / split / f'InterHand2.6M_{split}'
    sh.write_json(Path(f'{prefix}_data.json'), {'images': images, 'annotations': anns})
    sh.write_json(Path(f'{prefix}_camera.json'), {str(capture): cams})
    sh.write_json(Path(f'{prefix}_joint_3d.json'), joint_3d)
    sh.write_json(Path(f'{prefix}_MANO_NeuralAnnot.json'), fits)
  return root
