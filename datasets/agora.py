"""AGORA (3D set, SMPL-X ground truth): reader and synthetic writer.

upstream: data/AGORA/AGORA.py as of HEAD (rewritten June 2024) and the files
tool/AGORA/{agora2coco_smplx.py, crop_and_resize_4k_images.py} write. Under
`data_root/AGORA/data/`:

  AGORA_{train,validation}_SMPLX.json   COCO-like
    images: id, file_name_3840x2160, file_name_1280x720
    annotations: id, image_id, person_id, smplx_param_path, cam_param_path,
      gender, kid, occlusion, is_valid, age, ethnicity,
      bbox, lhand_bbox, rhand_bbox, face_bbox (xywh, 3840x2160 pixels)
  smplx_params_cam/<folder>/<image>/<person_id>.json   camera-frame SMPL-X:
      global_orient, body_pose, left_hand_pose, right_hand_pose, jaw_pose,
      leye_pose, reye_pose, betas, expression, transl (flat lists)
  cam_params/<folder>/<image>.json      {focal (2,), princpt (2,)} 3840x2160 px
  images_3840x2160/<folder>_crop/<image>_person_id_<pid>.{png,json}
      512x384 crops; json {bbox_orig, affine_mat (2, 3) 4K -> crop,
      resized_height, resized_width}
  images_1280x720/<folder>/<image>_1280x720.png
  AGORA_test_bbox.json                  {file name: [{bbox: xywh 4K px}]}

Two modes, as upstream's `resolution`:
  (2160, 3840) (default, upstream's choice): the pre-cut crops. The record's
    image is the crop, its box the whole crop [0, 0, 384, 512] (not through
    process_bbox), the camera is mapped through affine_mat, and the hand/face
    boxes are mapped into the crop and then sanitised against 3840x2160, not
    the crop (upstream quirk, kept). Annotations without a crop .json are
    skipped (`num_dropped['crop_missing']`).
  anything else, (H, W): the downscaled full images named *_1280x720.png,
    read at (H, W). Boxes and cameras are scaled by (W/3840, H/2160), the body
    box goes through process_bbox (None: `num_dropped['bbox']`). Upstream uses
    (720, 1280); the synthetic writer renders 320x180 stand-ins under the same
    names, read with resolution=(180, 320).

Splits: 'train' and 'validation' (upstream's test split with test_set 'val')
read the SMPL-X json; 'test' reads the YOLOv5 detections of
AGORA_test_bbox.json and has no fits (smplx_valid 0). Annotations with
`is_valid` false are skipped (`num_dropped['invalid']`).

Records carry the camera-frame fit with every part valid (lhand, rhand, face),
cam_R identity and cam_t zero, and:
  person_id () int64: the annotation's person_id (train/validation) or the
    detection index (test). eval.py names test result files `_personId_<k>`
    with it; validation files use 0, 1, ... per image in sample order
    (`h4w_jax.evaluation.agora_files.agora_person_ids`), what upstream's glob gives in an
    empty folder.
  crop_trans (2, 3) f32: 4K-crop mode: affine_mat (3840x2160 pixels -> crop
    pixels); full-image mode: identity. upstream's test-mode img2bb_trans is
    aug_trans @ crop_trans and bb2img_trans its inverse; with them
    `h4w_jax.evaluation.agora_files.agora_joints_to_original` gives 3840x2160 pixels.
The joint fields stay empty: INFO.joints_from_smplx makes the SMPL-X joints
(computed from the fit on the device) the joint targets, as upstream's
targets joint_img = smplx_joint_img.

Where upstream is broken as committed, this reader:
  - returns masks that the transform turns into (137, 1) arrays (upstream's
    meta joint_valid / smplx_joint_valid are (137,) and crash the loss);
  - builds the ground truth with the neutral model by default, as upstream
    does although the fits are gendered; `gendered=True` sets smplx_gender
    from the annotation (the model the fits were made with);
  - keeps the first 10 betas (upstream's `[:10]`; the kid models' 11th beta,
    the kid-template blend, is lost, so kids' neutral/adult bodies are wrong
    in upstream too);
  - numbers validation result files without globbing the result folder
    (upstream's ids depend on run order and stale files; see person_id);
  - reads the test crops' key 'affine_mat' (the crop tool's key; upstream's
    test path asks for 'img2bb_trans', a KeyError);
  - looks for 720p test images in images_1280x720/test/ (README's layout;
    upstream's loader says data/test/).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np

from h4w_jax.common import dataset_constants
from h4w_jax.common import joint_sets as js
from h4w_datasets import db
from h4w_datasets import example as ex
from h4w_datasets import preprocessing as pre

_log = logging.getLogger(__name__)

INFO = db.DatasetInfo(name='AGORA', joint_names=js.JOINT_NAMES, flip_pairs=js.FLIP_PAIRS,
                      is_3d=True, joints_from_smplx=True)

SPLITS = ('train', 'validation', 'test')
ORIG_SHAPE = dataset_constants.AGORA_IMAGE_SHAPE   # (H, W) of AGORA's images
CROP_SHAPE = (512, 384)     # (H, W) of the crop tool's output (upstream's README command)

# Param json key -> (record key, size).
PARAM_KEYS = {
    'global_orient': ('smplx_root_pose', 3), 'body_pose': ('smplx_body_pose', 63),
    'left_hand_pose': ('smplx_lhand_pose', 45), 'right_hand_pose': ('smplx_rhand_pose', 45),
    'jaw_pose': ('smplx_jaw_pose', 3), 'betas': ('smplx_shape', 10),
    'expression': ('smplx_expr', 10), 'transl': ('smplx_trans', 3),
}


def _data_path(data_root) -> Path:
  return Path(data_root) / 'AGORA' / 'data'


def _crop_stem(data_path: Path, file_name_4k: str, person_id: int, folder=None) -> Path:
  """upstream: images_3840x2160/<folder>_crop/<image>_person_id_<pid> (no extension)."""
  parts = file_name_4k.split('/')
  folder = folder or parts[-2] + '_crop'
  return data_path / 'images_3840x2160' / folder / f'{parts[-1][:-4]}_person_id_{person_id}'


def _read_json(path, where):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f'{where}: cannot read {path}: {e}') from e


def _array(value, shape, where, key) -> np.ndarray:
  try:
    out = np.asarray(value, np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: {key!r} is not numeric: {e}') from e
  if out.size != int(np.prod(shape)) or not np.all(np.isfinite(out)):
    raise ValueError(f'{where}: {key!r} must hold {shape} finite numbers, got shape {out.shape}')
  return out.reshape(shape)


def _hand_face_box_crop(box_xywh, affine) -> Optional[np.ndarray]:
  """upstream (4K mode): xywh 4K -> crop via affine_mat, sanitised against 3840x2160 -> xyxy."""
  corners = np.array(box_xywh, np.float64).reshape(2, 2)
  corners[1] += corners[0]
  corners = corners @ affine[:, :2].T.astype(np.float64) + affine[:, 2]
  corners[1] -= corners[0]
  box = pre.sanitize_bbox(corners.reshape(4), ORIG_SHAPE[1], ORIG_SHAPE[0])
  if box is not None:
    box[2:] += box[:2]
  return box


def _scale_box(box_xywh, resolution) -> np.ndarray:
  """upstream (720p mode): x, w * W/3840 and y, h * H/2160."""
  box = np.array(box_xywh, np.float64).reshape(2, 2)
  box[:, 0] = box[:, 0] / ORIG_SHAPE[1] * resolution[1]
  box[:, 1] = box[:, 1] / ORIG_SHAPE[0] * resolution[0]
  return box.reshape(4)


def _hand_face_box_scaled(box_xywh, resolution) -> Optional[np.ndarray]:
  box = pre.sanitize_bbox(_scale_box(box_xywh, resolution), resolution[1], resolution[0])
  if box is not None:
    box[2:] += box[:2]
  return box


class AGORA:
  """upstream: AGORA(transform, data_split) with its `resolution` and `test_set` fixed.

  Args:
    data_root: the folder that holds `AGORA/` (upstream's `data/`).
    split: 'train', 'validation' or 'test'.
    resolution: (H, W); (2160, 3840) reads the 4K crops, anything else the
      downscaled full images at that size.
    gendered: smplx_gender from the annotation instead of neutral (upstream).
  """

  def __init__(self, data_root, split: str, *, resolution=ORIG_SHAPE, gendered: bool = False):
    if split not in SPLITS:
      raise ValueError(f'AGORA split must be one of {SPLITS}, got {split!r}')
    self.info = INFO
    self.split = split
    self.resolution = tuple(int(v) for v in resolution)
    self.crops = self.resolution == ORIG_SHAPE
    self.gendered = gendered
    self._path = _data_path(data_root)
    self.num_dropped = {'invalid': 0, 'crop_missing': 0, 'bbox': 0}
    self._rows = []
    if split == 'test':
      self._load_detections()
    else:
      self._load_annotations()
    _log.info('AGORA %s (%s): %d records, dropped %s', split,
              '4K crops' if self.crops else f'{self.resolution} images', len(self._rows),
              self.num_dropped)

  def _read_crop(self, stem: Path, where: str):
    """The crop tool's json: (affine (2, 3) f32, (H, W)), or None when there is none."""
    json_path = stem.with_suffix('.json')
    if not json_path.is_file():
      return None
    info = _read_json(json_path, where)
    with db.malformed(json_path, f' (the crop of {where})'):
      key = 'affine_mat' if 'affine_mat' in info else 'img2bb_trans'
      try:
        affine = _array(info[key], (2, 3), f'{where} {json_path}', key).astype(np.float32)
        shape = db.image_shape(info, f'{where} {json_path}',
                               ('resized_height', 'resized_width'))
      except KeyError as e:
        raise ValueError(f'{where}: {json_path} has no key {e}') from e
    return affine, shape

  def _load_annotations(self):
    name = 'train' if self.split == 'train' else 'validation'
    path = self._path / f'AGORA_{name}_SMPLX.json'
    content = _read_json(path, f'AGORA {self.split}')
    with db.malformed(path, ' (an object with images and annotations expected)'):
      images = {img['id']: img for img in content.get('images', [])}
      annotations = list(content.get('annotations', []))
    for k, ann in enumerate(annotations):
      with db.malformed(path, f' annotation #{k}'):
        where = f"{path} annotation id {ann.get('id')}"
        try:
          if not ann['is_valid']:
            self.num_dropped['invalid'] += 1
            continue
          img = images[ann['image_id']]
          gender = ann['gender']
          person_id = int(ann['person_id'])
          boxes = {part: _array(ann[f'{part}_bbox' if part else 'bbox'], (4,), where,
                                part or 'bbox')
                   for part in ('', 'lhand', 'rhand', 'face')}
          row = {'ann_id': int(ann['id']), 'img_id': int(ann['image_id']),
                 'person_id': person_id, 'param_path': self._path / ann['smplx_param_path'],
                 'cam_path': self._path / ann['cam_param_path'], 'where': where}
          file_4k, file_720 = img['file_name_3840x2160'], img['file_name_1280x720']
        except KeyError as e:
          raise ValueError(f'{where}: missing key {e}') from e
        if gender not in ('male', 'female', 'neutral'):
          raise ValueError(f"{where}: gender must be 'male', 'female' or 'neutral', "
                           f'got {gender!r}')
        row['gender'] = ex.GENDERS.index(gender) if self.gendered else 0
        if self.crops:
          stem = _crop_stem(self._path, file_4k, person_id)
          crop = self._read_crop(stem, where)
          if crop is None:
            self.num_dropped['crop_missing'] += 1
            continue
          affine, shape = crop
          row.update(img_path=str(stem.with_suffix('.png')), img_shape=shape,
                     crop_trans=affine, bbox=np.array([0, 0, shape[1], shape[0]], np.float32))
          for part in ('lhand', 'rhand', 'face'):
            row[part] = _hand_face_box_crop(boxes[part], affine)
        else:
          bbox = pre.process_bbox(_scale_box(boxes[''], self.resolution), self.resolution[1],
                                  self.resolution[0])
          if bbox is None:
            self.num_dropped['bbox'] += 1
            continue
          row.update(img_path=str(self._path / file_720), img_shape=self.resolution,
                     crop_trans=np.eye(2, 3, dtype=np.float32), bbox=bbox)
          for part in ('lhand', 'rhand', 'face'):
            row[part] = _hand_face_box_scaled(boxes[part], self.resolution)
        self._rows.append(row)

  def _load_detections(self):
    path = self._path / 'AGORA_test_bbox.json'
    detections = _read_json(path, 'AGORA test')
    with db.malformed(path, ' (an object of detections by image expected)'):
      images = [(file_name, list(people)) for file_name, people in detections.items()]
    for img_id, (file_name, people) in enumerate(images):
      for person_id, person in enumerate(people):
        with db.malformed(path, f' {file_name!r} detection {person_id}'):
          where = f'{path} {file_name!r} detection {person_id}'
          try:
            box = _array(person['bbox'], (4,), where, 'bbox')
          except (KeyError, TypeError) as e:
            raise ValueError(f'{where}: missing key bbox') from e
          row = {'ann_id': len(self._rows) + sum(self.num_dropped.values()),
                 'img_id': img_id, 'person_id': person_id, 'gender': 0, 'where': where}
          if self.crops:
            stem = _crop_stem(self._path, f'test/{file_name}', person_id)
            crop = self._read_crop(stem, where)
            if crop is None:
              self.num_dropped['crop_missing'] += 1
              continue
            affine, shape = crop
            row.update(img_path=str(stem.with_suffix('.png')), img_shape=shape,
                       crop_trans=affine, bbox=np.array([0, 0, shape[1], shape[0]], np.float32))
          else:
            bbox = pre.process_bbox(_scale_box(box, self.resolution), self.resolution[1],
                                    self.resolution[0])
            if bbox is None:
              self.num_dropped['bbox'] += 1
              continue
            row.update(img_path=str(self._path / 'images_1280x720' / 'test' / file_name),
                       img_shape=self.resolution, crop_trans=np.eye(2, 3, dtype=np.float32),
                       bbox=bbox)
          self._rows.append(row)

  def __len__(self) -> int:
    return len(self._rows)

  def _camera(self, row):
    """upstream: cam_param mapped into the record's image (crop affine or resize)."""
    cam = _read_json(row['cam_path'], row['where'])
    where = f"{row['where']} {row['cam_path']}"
    with db.malformed(row['cam_path'], f" ({row['where']})"):
      focal = _array(cam['focal'], (2,), where, 'focal').astype(np.float32)
      princpt = _array(cam['princpt'], (2,), where, 'princpt').astype(np.float32)
    if self.crops:
      a = row['crop_trans']
      scale, offset = np.array([a[0, 0], a[1, 1]]), a[:, 2]
    else:
      scale = np.array([self.resolution[1] / ORIG_SHAPE[1], self.resolution[0] / ORIG_SHAPE[0]])
      offset = np.zeros(2)
    return (focal * scale).astype(np.float32), (princpt * scale + offset).astype(np.float32)

  def __getitem__(self, i: int) -> dict:
    if not 0 <= i < len(self):
      raise IndexError(f'AGORA {self.split}: index {i} out of range [0, {len(self)})')
    row = self._rows[i]
    record = ex.empty_record(INFO.num_joints)
    record.update(img_path=row['img_path'], img_shape=np.array(row['img_shape'], np.int32),
                  bbox=np.asarray(row['bbox'], np.float32), ann_id=np.int64(row['ann_id']),
                  img_id=np.int64(row['img_id']), person_id=np.int64(row['person_id']),
                  crop_trans=np.asarray(row['crop_trans'], np.float32),
                  smplx_gender=np.int32(row['gender']))
    if self.split == 'test':
      return record
    for part in ('lhand', 'rhand', 'face'):
      if row[part] is not None:
        record[f'{part}_bbox'] = np.asarray(row[part], np.float32)
        record[f'{part}_bbox_valid'] = np.float32(1)
    param = _read_json(row['param_path'], row['where'])
    where = f"{row['where']} {row['param_path']}"
    for key, (name, size) in PARAM_KEYS.items():
      with db.malformed(row['param_path'], f" ({row['where']}) {key!r}"):
        if key not in param:
          raise ValueError(f'{where}: missing key {key!r}')
        values = np.asarray(param[key], np.float64).reshape(-1)
        if key == 'betas':
          values = values[:size]   # upstream's [:10]: drops the kid models' 11th beta
        record[name] = _array(values, (size,), where, key).astype(np.float32)
    record['cam_focal'], record['cam_princpt'] = self._camera(row)
    for flag in ex.SMPLX_FLAGS:
      record[flag] = np.float32(1)
    return record


# ---------------------------------------------------------------------------
# Synthetic mini dataset

STANDIN_SHAPE = (180, 320)   # (H, W) of the synthetic "1280x720" images: 4K / 12
_STANDIN_SCALE = ORIG_SHAPE[1] / STANDIN_SHAPE[1]
# upstream (agora2coco_smplx.py): the 127 SMPL-X joints AGORA projects are the
# first 127 outputs; its hand and face parts, as output indices.
_GT_JOINTS = 127
_LHAND_JOINTS = list(range(25, 40)) + list(range(66, 71))
_RHAND_JOINTS = list(range(40, 55)) + list(range(71, 76))
_FACE_JOINTS = list(range(76, 127))
_FOLDERS = {'train': 'train_0', 'validation': 'validation', 'test': 'test'}


def _crop_box(bbox) -> np.ndarray:
  """crop_and_resize_4k_images.py set_aspect_ratio: aspect 0.75, x1.25, no sanitising."""
  x, y, w, h = (float(v) for v in bbox)
  cx, cy = x + w / 2, y + h / 2
  aspect = CROP_SHAPE[1] / CROP_SHAPE[0]
  if w > aspect * h:
    h = w / aspect
  elif w < aspect * h:
    w = h * aspect
  w, h = w * 1.25, h * 1.25
  return np.array([cx - w / 2, cy - h / 2, w, h])


def _render_people(people, faces, focal, princpt, image):
  """Render several camera-frame meshes into `image` with one z-buffer."""
  from smplx_jax import render
  verts = np.concatenate([p['vertices'] for p in people])
  offsets = np.cumsum([0] + [len(p['vertices']) for p in people[:-1]])
  tris = np.concatenate([faces + o for o in offsets])
  out, _ = render.render_mesh(verts, tris, focal, princpt, image=image, color=(0.8, 0.7, 0.6))
  return np.asarray(out, np.uint8)


def _write_json(path: Path, content) -> None:
  os.makedirs(path.parent, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(content, f)


def _write_png(path: Path, rgb) -> None:
  import cv2
  os.makedirs(path.parent, exist_ok=True)
  cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


def _people(scenes) -> list[list[dict]]:
  """Scenes -> images of people (camera frame of the image's camera).

  Image k shows scene k; the last scene joins the last image, moved 0.8 m to
  the right and 1.5 m back.
  """
  def person(scene, shift, gender):
    return {'params': dict(scene.params, trans=scene.params['trans'] + shift),
            'joints': scene.joints_cam + shift, 'vertices': scene.vertices_cam + shift,
            'gender': gender}
  zero = np.zeros(3, np.float32)
  images = [[person(s, zero, s.gender)] for s in scenes[:-1]]
  images[-1].append(person(scenes[-1], np.array([0.8, 0, 1.5], np.float32), scenes[-1].gender))
  return images


def write_synthetic(data_root, human_model_path, *, num: int = 8, seed: int = 0) -> Path:
  """Write `num` rendered SMPL-X people per split in AGORA's layout under data_root/AGORA/data.

  Images: person k on image k, the last person beside the one before it (two
  people on the last image). Genders alternate male / female; person 1 is a
  kid whose param file holds 11 betas. Image 0 also has an annotation with
  is_valid false (dropped) and one far off-screen, whose crop is not written
  (4K mode: crop_missing; full-image mode: its box is outside, dropped).

  Written per split: the annotation json, param and camera jsons, 512x384
  crops with their json (rendered directly through the crop tool's affine,
  over the stand-in image warped the same way; no 3840x2160 image is
  written), and 320x180 stand-ins of the 1280x720 images. The test split gets
  AGORA_test_bbox.json (the true boxes as detections) and its crops / images.
  Needs num >= 3.
  """
  import cv2
  import smplx_jax
  from h4w_datasets import synthetic

  if num < 3:
    raise ValueError(f'AGORA write_synthetic needs num >= 3, got {num}')
  data_path = _data_path(data_root)
  genders = ['male' if k % 2 == 0 else 'female' for k in range(num)]
  rendered = {g: iter(synthetic.render_scenes(
      human_model_path, genders.count(g), seed=seed + 100 * k, image_shape=STANDIN_SHAPE,
      model_type='smplx', gender=g)) for k, g in enumerate(('male', 'female'))}
  scenes = [next(rendered[g]) for g in genders]
  faces = np.asarray(smplx_jax.create(human_model_path, 'smplx', gender='neutral', use_pca=False,
                                      use_face_contour=True, flat_hand_mean=False).faces)
  image_people = _people(scenes)
  image_cams = [(s.focal * _STANDIN_SCALE, s.princpt * _STANDIN_SCALE) for s in scenes[:-1]]
  # Stand-in images: people rendered together (one z-buffer) over the scene's background.
  standins = [s.image if len(people) == 1 else
              _render_people(people, faces, s.focal, s.princpt, s.image)
              for s, people in zip(scenes[:-1], image_people)]

  image_id = ann_id = 0
  crops = {}
  for split in SPLITS:
    folder = _FOLDERS[split]
    images, annotations, detections = [], [], {}
    for k, (people, (focal, princpt), standin) in enumerate(
        zip(image_people, image_cams, standins)):
      name = f'ag_{split}set_synth_{k:05d}.png'
      file_4k = f'images_3840x2160/{folder}/{name}'
      file_720 = f'images_1280x720/{folder}/{name[:-4]}_1280x720.png'
      images.append({'id': image_id, 'file_name_3840x2160': file_4k,
                     'file_name_1280x720': file_720})
      _write_png(data_path / (file_720 if split != 'test' else f'images_1280x720/test/{name}'),
                 standin)
      cam_rel = f'cam_params/{folder}/{name[:-4]}.json'
      _write_json(data_path / cam_rel, {'focal': focal.tolist(), 'princpt': princpt.tolist()})
      extra = []
      if k == 0:   # an off-screen twin (valid) and an is_valid=False copy of person 0
        far = dict(people[0], params=dict(people[0]['params'],
                                          trans=people[0]['params']['trans'] + [40.0, 0, 0]),
                   joints=people[0]['joints'] + [40.0, 0, 0], offscreen=True)
        extra = [far, dict(people[0], invalid=True)]
      for pid, p in enumerate(people + extra):
        joints_4k = p['joints'][:, :2] / p['joints'][:, 2:] * focal + princpt
        boxes = {key: pre.get_bbox(joints_4k[idx], np.ones(len(idx))).tolist()
                 for key, idx in (('bbox', list(range(_GT_JOINTS))),
                                  ('lhand_bbox', _LHAND_JOINTS), ('rhand_bbox', _RHAND_JOINTS),
                                  ('face_bbox', _FACE_JOINTS))}
        kid = k == 1 and pid == 0
        param_rel = f'smplx_params_cam/{folder}/{name[:-4]}/{pid}.json'
        params = p['params']
        betas = params['shape'].tolist() + ([0.7] if kid else [])
        _write_json(data_path / param_rel, {
            'global_orient': params['root_pose'].tolist(), 'body_pose': params['body_pose'].tolist(),
            'left_hand_pose': params['lhand_pose'].tolist(),
            'right_hand_pose': params['rhand_pose'].tolist(),
            'jaw_pose': params['jaw_pose'].tolist(), 'leye_pose': [0.0] * 3,
            'reye_pose': [0.0] * 3, 'betas': betas, 'expression': params['expr'].tolist(),
            'transl': params['trans'].tolist()})
        annotations.append({
            'id': ann_id, 'image_id': image_id, 'person_id': pid, 'smplx_param_path': param_rel,
            'cam_param_path': cam_rel, 'gender': p['gender'], 'kid': kid, 'occlusion': 0.0,
            'is_valid': not p.get('invalid', False), 'age': '31-50', 'ethnicity': 'synthetic',
            **boxes})
        ann_id += 1
        if p.get('invalid'):
          continue
        if split == 'test':
          detections.setdefault(name, []).append({'bbox': boxes['bbox']})
        if p.get('offscreen'):
          continue
        # The crop tool's crop, rendered directly at 512x384.
        crop_box = _crop_box(boxes['bbox'])
        affine = pre.gen_trans(crop_box[0] + crop_box[2] / 2, crop_box[1] + crop_box[3] / 2,
                               crop_box[2], crop_box[3], CROP_SHAPE[1], CROP_SHAPE[0], 1.0, 0.0)
        standin_to_crop = affine.astype(np.float64) @ np.diag([_STANDIN_SCALE, _STANDIN_SCALE, 1])
        crop_focal = focal * np.diag(affine[:, :2])
        crop_princpt = princpt * np.diag(affine[:, :2]) + affine[:, 2]
        if (k, pid) not in crops:   # the splits share their people: render each crop once
          background = cv2.warpAffine(standin, standin_to_crop, CROP_SHAPE[::-1],
                                      flags=cv2.INTER_LINEAR)
          crops[k, pid] = _render_people(people, faces, crop_focal, crop_princpt, background)
        crop = crops[k, pid]
        stem = _crop_stem(data_path, file_4k, pid)
        _write_png(stem.with_suffix('.png'), crop)
        _write_json(stem.with_suffix('.json'), {
            'bbox_orig': crop_box.tolist(), 'affine_mat': affine.tolist(),
            'resized_height': CROP_SHAPE[0], 'resized_width': CROP_SHAPE[1]})
      image_id += 1
    if split == 'test':
      _write_json(data_path / 'AGORA_test_bbox.json', detections)
    else:
      _write_json(data_path / f'AGORA_{split}_SMPLX.json',
                  {'images': images, 'annotations': annotations})
  return Path(data_root)
