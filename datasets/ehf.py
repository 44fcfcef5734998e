"""EHF: 100 studio images with registered SMPL-X ground-truth meshes (test set).

upstream: data/EHF/EHF.py (branch main). Files under `data_root/EHF/data/`:

  EHF.json        COCO format; images {id, file_name ('01_img.jpg'), width,
                  height}; annotations {id, image_id, body_bbox, lefthand_bbox,
                  righthand_bbox, face_bbox} (xywh pixels)
  <NN>_align.ply  the GT mesh, NN = file_name.split('_')[0]; 10475 SMPL-X
                  vertices (metres) in the scan's world frame

Records: bbox = process_bbox(body_bbox) (an annotation it rejects is dropped
and counted); the three part boxes as xyxy, always valid; `smplx_mesh_cam`
(10475, 3) f32 holds the PLY's vertices unchanged, in the PLY's frame, as
upstream's target does. The camera rotation R (upstream's
EHF.cam_param['R'], `h4w_jax.common.dataset_constants.EHF_GT_ROTATION`) is applied in
evaluation, as upstream applies it in evaluate(): `metrics.ehf_metrics` takes
the mesh as stored. The record also carries R as `cam_R` (world -> camera, no
translation) so a record is self-describing. EHF has no joint annotations:
the record uses the 137 SMPL-X joint names with every joint invalid (the
transform needs at least one joint row to remap).

Quirk kept (SPEC_DATA §4.6): upstream's EHF scales the hand/face box x by
output_hm_shape[1] (8) instead of [2] (6): INFO.hand_face_box_x_scale = 1. The
boxes are not used at test time.

PLY files are parsed without the plyfile package (`read_ply_vertices`): ascii,
binary_little_endian and binary_big_endian, any element order, float or
integer x/y/z properties.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from h4w_datasets import db
from h4w_datasets import example as ex
from h4w_datasets import preprocessing as pre
from h4w_datasets import synthetic
from h4w_jax.common import joint_sets as js
from h4w_jax.common.dataset_constants import EHF_GT_ROTATION

log = logging.getLogger(__name__)

NUM_VERTICES = 10475

INFO = db.DatasetInfo(name='EHF', joint_names=js.JOINT_NAMES, flip_pairs=js.FLIP_PAIRS,
                      is_3d=False, hand_face_box_x_scale=1,
                      hand_face_box_dummy=db.ZERO_BOX)

ANNOT_FILE = 'EHF.json'
BOX_KEYS = (('lhand', 'lefthand_bbox'), ('rhand', 'righthand_bbox'), ('face', 'face_bbox'))

# ----------------------------------------------------------------------------- PLY

_PLY_TYPES = {
    'char': 'i1', 'int8': 'i1', 'uchar': 'u1', 'uint8': 'u1', 'short': 'i2', 'int16': 'i2',
    'ushort': 'u2', 'uint16': 'u2', 'int': 'i4', 'int32': 'i4', 'uint': 'u4', 'uint32': 'u4',
    'float': 'f4', 'float32': 'f4', 'double': 'f8', 'float64': 'f8',
}
_PLY_FORMATS = {'ascii': None, 'binary_little_endian': '<', 'binary_big_endian': '>'}
_MAX_HEADER_BYTES = 1 << 16


def _ply_type(name: str, path, line: str) -> str:
  if name not in _PLY_TYPES:
    raise ValueError(f'{path}: unknown PLY property type {name!r} in header line {line!r}')
  return _PLY_TYPES[name]


def _parse_ply_header(f, path):
  """-> (format, [(element, count, [(prop, dtype or (count dtype, item dtype))])], data offset)."""
  if f.readline().rstrip(b'\r\n') != b'ply':
    raise ValueError(f"{path}: not a PLY file (the first line is not 'ply')")
  fmt, elements = None, []
  while True:
    raw = f.readline()
    if not raw:
      raise ValueError(f"{path}: PLY header has no 'end_header'")
    if f.tell() > _MAX_HEADER_BYTES:
      raise ValueError(f'{path}: PLY header longer than {_MAX_HEADER_BYTES} bytes')
    line = raw.decode('ascii', 'replace').strip()
    words = line.split()
    if not words or words[0] in ('comment', 'obj_info'):
      continue
    if words[0] == 'end_header':
      break
    if words[0] == 'format':
      if len(words) != 3 or words[1] not in _PLY_FORMATS:
        raise ValueError(f'{path}: unsupported PLY format line {line!r}')
      fmt = words[1]
    elif words[0] == 'element':
      if len(words) != 3 or not words[2].isdigit():
        raise ValueError(f'{path}: bad PLY element line {line!r}')
      elements.append((words[1], int(words[2]), []))
    elif words[0] == 'property':
      if not elements:
        raise ValueError(f'{path}: PLY property before any element: {line!r}')
      if len(words) == 5 and words[1] == 'list':
        kind = (_ply_type(words[2], path, line), _ply_type(words[3], path, line))
      elif len(words) == 3:
        kind = _ply_type(words[1], path, line)
      else:
        raise ValueError(f'{path}: bad PLY property line {line!r}')
      elements[-1][2].append((words[-1], kind))
    else:
      raise ValueError(f'{path}: unexpected PLY header line {line!r}')
  if fmt is None:
    raise ValueError(f"{path}: PLY header has no 'format' line")
  return fmt, elements, f.tell()


def _skip_binary_element(data: bytes, offset: int, count: int, props, order: str, path) -> int:
  """Byte offset after `count` items of an element (list properties walked one by one)."""
  if all(isinstance(kind, str) for _, kind in props):
    return offset + count * sum(np.dtype(kind).itemsize for _, kind in props)
  for _ in range(count):
    for _, kind in props:
      if isinstance(kind, str):
        offset += np.dtype(kind).itemsize
      else:
        count_dtype = np.dtype(order + kind[0])
        if offset + count_dtype.itemsize > len(data):
          raise ValueError(f'{path}: PLY data truncated')
        n = int(np.frombuffer(data, count_dtype, 1, offset)[0])
        offset += count_dtype.itemsize + n * np.dtype(kind[1]).itemsize
  return offset


def read_ply_vertices(path) -> np.ndarray:
  """The x, y, z of a PLY file's `vertex` element -> (V, 3) float32.

  upstream: preprocessing.load_ply (plyfile's vertex x, y, z). Raises
  ValueError naming the file for a malformed header, a missing vertex element
  or x/y/z property, a list property inside `vertex`, or truncated data.
  """
  path = os.fspath(path)
  with open(path, 'rb') as f:
    fmt, elements, start = _parse_ply_header(f, path)
    data = f.read()
  names = [name for name, _, _ in elements]
  if 'vertex' not in names:
    raise ValueError(f"{path}: PLY file has no 'vertex' element (elements: {names})")
  v = names.index('vertex')
  _, count, props = elements[v]
  prop_names = [name for name, _ in props]
  for axis in 'xyz':
    if axis not in prop_names:
      raise ValueError(f"{path}: PLY vertex element has no {axis!r} property ({prop_names})")
  if any(not isinstance(kind, str) for _, kind in props):
    raise ValueError(f'{path}: PLY vertex element has a list property (unsupported)')
  cols = [prop_names.index(axis) for axis in 'xyz']

  if fmt == 'ascii':
    lines = data.decode('ascii', 'replace').splitlines()
    # One line per item; skip the items of the elements before `vertex`.
    first = sum(n for _, n, _ in elements[:v])
    rows = lines[first:first + count]
    if len(rows) != count:
      raise ValueError(f'{path}: PLY data has {len(rows)} vertex lines, expected {count}')
    try:
      values = np.array(' '.join(rows).split(), np.float64)
    except ValueError as e:
      raise ValueError(f'{path}: PLY vertex data is not numeric: {e}') from e
    if values.size != count * len(props):
      raise ValueError(f'{path}: PLY vertex data has {values.size} numbers, expected '
                       f'{count} x {len(props)}')
    return values.reshape(count, len(props))[:, cols].astype(np.float32)

  order = _PLY_FORMATS[fmt]
  offset = 0
  for _, n, element_props in elements[:v]:
    offset = _skip_binary_element(data, offset, n, element_props, order, path)
  dtype = np.dtype([(name, order + kind) for name, kind in props])
  if offset + count * dtype.itemsize > len(data):
    raise ValueError(f'{path}: PLY data truncated: {count} vertices of {dtype.itemsize} bytes '
                     f'need {count * dtype.itemsize} bytes after offset {start + offset}, '
                     f'the file has {len(data) - offset}')
  table = np.frombuffer(data, dtype, count, offset)
  return np.stack([table[axis] for axis in 'xyz'], axis=1).astype(np.float32)


def write_ply(path, vertices, faces=None, *, binary: bool = True) -> None:
  """Write (V, 3) float32 vertices (and (F, 3) int faces) as a PLY file."""
  vertices = np.asarray(vertices, np.float32)
  lines = ['ply', f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
           'comment h4w-jax synthetic EHF', f'element vertex {len(vertices)}',
           'property float x', 'property float y', 'property float z']
  if faces is not None:
    faces = np.asarray(faces, np.int32)
    lines += [f'element face {len(faces)}', 'property list uchar int vertex_indices']
  header = ('\n'.join(lines + ['end_header']) + '\n').encode('ascii')
  with open(path, 'wb') as f:
    f.write(header)
    if binary:
      f.write(vertices.astype('<f4').tobytes())
      if faces is not None:
        table = np.zeros(len(faces), np.dtype([('n', 'u1'), ('idx', '<i4', (3,))]))
        table['n'], table['idx'] = 3, faces
        f.write(table.tobytes())
    else:
      f.write(''.join(f'{x:.9g} {y:.9g} {z:.9g}\n' for x, y, z in vertices).encode('ascii'))
      if faces is not None:
        f.write(''.join(f'3 {a} {b} {c}\n' for a, b, c in faces).encode('ascii'))


# ----------------------------------------------------------------------------- reader


def _box(ann: dict, key: str, where: str) -> np.ndarray:
  """ann[key] as a (4,) float32 xywh box, or a ValueError naming `where` and `key`."""
  try:
    box = np.asarray(ann[key], np.float32).reshape(-1)
  except (TypeError, ValueError):
    box = None
  if box is None or box.shape != (4,) or not np.all(np.isfinite(box)):
    raise ValueError(f'{where}: {key!r} must be 4 finite numbers, got {ann[key]!r}')
  return box


class EHF:
  """upstream: EHF(transform, 'test') as records (only the test split exists).

  Args:
    data_root: the folder holding `EHF/`.
    split: 'test'.
  """

  info = INFO

  def __init__(self, data_root, split: str = 'test'):
    if split != 'test':
      raise ValueError(f"EHF has only the 'test' split, got {split!r}")
    self.split = split
    data_dir = Path(data_root) / 'EHF' / 'data'
    annot_path = data_dir / ANNOT_FILE
    annot = db.read_json(annot_path)
    if not isinstance(annot, dict) or 'images' not in annot or 'annotations' not in annot:
      raise ValueError(f"{annot_path}: expected a COCO dict with 'images' and 'annotations'")
    images = {}
    with db.malformed(annot_path, ' images'):
      self._index_images(annot['images'], annot_path, images)

    self.num_dropped = {'degenerate_bbox': 0}
    self._records, seen = [], set()
    with db.malformed(annot_path, ' annotations'):
      annotations = list(annot['annotations'])
    for k, ann in enumerate(annotations):
      with db.malformed(annot_path, f' annotation #{k}'):
        self._add(ann, images, data_dir, annot_path, seen)
    log.info('EHF %s: %d annotations kept, dropped %s', split, len(self._records),
             self.num_dropped)

  @staticmethod
  def _index_images(entries, annot_path, images):
    for img in entries:
      for key in ('id', 'file_name', 'width', 'height'):
        if key not in img:
          raise ValueError(f'{annot_path}: image {img.get("id")!r}: missing {key!r}')
      images[int(img['id'])] = img

  def _add(self, ann, images, data_dir, annot_path, seen):
    """One annotation -> a record in self._records (or counted as dropped)."""
    aid = ann.get('id')
    where = f'{annot_path}: annotation {aid!r} (image {ann.get("image_id")!r})'
    for key in ('id', 'image_id', 'body_bbox') + tuple(k for _, k in BOX_KEYS):
      if key not in ann:
        raise ValueError(f'{where}: missing {key!r}')
    if aid in seen:
      raise ValueError(f'{where}: duplicate annotation id')
    seen.add(aid)
    img = images.get(int(ann['image_id']))
    if img is None:
      raise ValueError(f'{where}: image_id not in the images list')
    _box(ann, 'body_bbox', where)
    height, width = db.image_shape(img, where)
    bbox = pre.process_bbox(ann['body_bbox'], width, height,
                            where=f'{where} body_bbox')
    if bbox is None:
      self.num_dropped['degenerate_bbox'] += 1
      return
    rec = ex.empty_record(INFO.num_joints)
    rec['img_path'] = os.fspath(data_dir / img['file_name'])
    rec['mesh_path'] = os.fspath(data_dir / (img['file_name'].split('_')[0] + '_align.ply'))
    if not os.path.exists(rec['mesh_path']):
      raise ValueError(f"{where}: GT mesh {rec['mesh_path']} does not exist")
    rec['img_shape'] = np.array([height, width], np.int32)
    rec['bbox'] = np.asarray(bbox, np.float32)
    rec['ann_id'], rec['img_id'] = np.int64(aid), np.int64(ann['image_id'])
    rec['cam_R'] = EHF_GT_ROTATION.astype(np.float32)
    for part, key in BOX_KEYS:
      box = _box(ann, key, where)
      rec[f'{part}_bbox'] = np.concatenate([box[:2], box[:2] + box[2:]])
      rec[f'{part}_bbox_valid'] = np.float32(1)
    self._records.append(rec)

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, i: int) -> dict:
    record = {k: (v.copy() if isinstance(v, np.ndarray) else v)
              for k, v in self._records[i].items()}
    mesh_path = record.pop('mesh_path')
    mesh = read_ply_vertices(mesh_path)
    if mesh.shape != (NUM_VERTICES, 3):
      raise ValueError(f'{mesh_path}: GT mesh has {mesh.shape[0]} vertices, '
                       f'expected {NUM_VERTICES} (SMPL-X)')
    if not np.all(np.isfinite(mesh)):
      raise ValueError(f'{mesh_path}: GT mesh has non-finite vertices')
    record['smplx_mesh_cam'] = mesh
    return record


# ----------------------------------------------------------------------------- synthetic data


def write_synthetic(data_root, human_model_path, *, num: int = 8, seed: int = 0) -> Path:
  """Write a mini EHF: `num` images with GT meshes plus one annotation with a degenerate box.

  The GT mesh is the rendered camera-frame mesh taken to EHF's world frame
  (R^T v, so that R v gives it back); even-numbered meshes are binary PLY,
  odd ones ascii. Part boxes surround the projected hand and face joints.
  """
  data_dir = Path(data_root) / 'EHF' / 'data'
  data_dir.mkdir(parents=True, exist_ok=True)
  scenes = synthetic.render_scenes(human_model_path, num, seed=seed)
  with np.load(Path(human_model_path) / 'smplx' / 'SMPLX_NEUTRAL.npz', allow_pickle=False) as m:
    faces = np.asarray(m['f'], np.int32)
  images, anns = [], []
  parts = {'lefthand_bbox': js.JOINT_PART['lhand'], 'righthand_bbox': js.JOINT_PART['rhand'],
           'face_bbox': js.JOINT_PART['face']}
  for k, scene in enumerate(scenes):
    name = f'{k + 1:02d}'
    cv2.imwrite(os.fspath(data_dir / f'{name}_img.jpg'), scene.image[:, :, ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 95])
    world = synthetic.cam_to_world(np.asarray(scene.vertices_cam, np.float64), EHF_GT_ROTATION,
                                   np.zeros(3))
    write_ply(data_dir / f'{name}_align.ply', world, faces, binary=k % 2 == 0)
    height, width = scene.image_shape
    images.append({'id': k + 1, 'file_name': f'{name}_img.jpg', 'width': width,
                   'height': height})
    joints = np.asarray(scene.joints_img, np.float64)[js.JOINT_IDX]
    verts = np.asarray(scene.vertices_cam, np.float64)
    verts_img = verts[:, :2] / verts[:, 2:] * scene.focal + scene.princpt
    ann = {'id': k + 1, 'image_id': k + 1, 'category_id': 1,
           'body_bbox': _xywh(verts_img, 0.02)}
    for key, (start, stop) in parts.items():
      ann[key] = _xywh(joints[start:stop], 0.1)
    anns.append(ann)
  # One annotation whose body box lies outside its image: process_bbox drops it.
  anns.append(dict(anns[0], id=num + 1, body_bbox=[float(images[0]['width'] + 10), 10.0, 50.0,
                                                   80.0]))
  with open(data_dir / ANNOT_FILE, 'w') as f:
    json.dump({'images': images, 'annotations': anns,
               'categories': [{'id': 1, 'name': 'person'}]}, f)
  return data_dir


def _xywh(points: np.ndarray, margin: float) -> list[float]:
  lo, hi = points.min(axis=0), points.max(axis=0)
  pad = (hi - lo) * margin
  return [float(v) for v in (lo[0] - pad[0], lo[1] - pad[1], hi[0] - lo[0] + 2 * pad[0],
                             hi[1] - lo[1] + 2 * pad[1])]
