"""Input pipeline: our grain workers + device targets against upstream's per-sample loader.

    python bench/input_pipeline.py [--num 8] [--image-size 1000x1000] [--batch 24] \\
        [--samples 96] [--max-workers 4] [--human-model-path DIR] \\
        [--upstream PATH/TO/Hand4Whole_RELEASE --torch-python PYTHON]

Both sides read the same synthetic mini datasets (Human3.6M, MSCOCO, MPII
written by h4w_datasets.synthetic into a temp dir, `--image-size` pixels per
image) and make the same samples with the same augmentation: position l of
the training stream -> (dataset, index, scale, rot, colour, flip) exactly as
our pipeline draws them (PositionSource.sample_of + transforms.sample_aug).

Ours, per sample in a grain worker: PositionSource[l] (reader record -> uint8
decode, one warpAffine with the flip folded in, joints, boxes); per batch on
the device: h4w_jax.models.targets.train_batch (the SMPL-X targets, jitted), timed
apart because on an accelerator it does not cost loader CPU.

Upstream, per sample in a torch DataLoader worker (torch.set_num_threads(1)):
load_img (cv2 decode, float32), augmentation (copy and flip of the whole
image, warpAffine in float, colour gain), ToTensor, process_db_coord with
name-based joint remapping, process_human_model_output (the SMPL-X layer on
the CPU, batch 1, full 10475-vertex mesh, then numpy) and the dataset's masks.
  * default: a REIMPLEMENTATION of that work in this file, with the PyPI
    `smplx` package as the layer (upstream vendors the same code); the output
    says so;
  * --upstream CHECKOUT: upstream's own dataset classes (data/<NAME>/<NAME>.py,
    main branch) on the same files, get_aug_config replaced by the shared
    augmentation. Needs torch, torchvision and pycocotools, and SMPL/MANO
    pickles without chumpy objects (synthetic ones are written to the temp dir
    unless --human-model-path is given).
The upstream side runs in a child process of --torch-python (default: this
interpreter), so it may be another environment (e.g. upstream's venv) and its
DataLoader forks a process that has never started JAX.

Reported:
  1. per core: samples per CPU-second of one process calling the per-sample
     function in a loop, cv2 and torch on one thread (CPU time, so a busy
     machine inflates it less than wall time), ours / upstream;
  2. worker scaling: wall-clock samples/s of the real loaders (grain
     mp_prefetch, torch DataLoader, batch --batch) for 0..--max-workers
     workers; the first 1 + 2 x workers batches (worker start-up, filled
     prefetch buffers) are not timed;
  3. device targets: ms per sample of the jitted train_batch at --batch on
     JAX's default device (host-to-device copy and compile not included), and,
     when that device is the CPU, the per-core ratio with them added to ours;
  4. TFDS vs folder, per worker (needs the [tfds] extra; `--tfds-only` runs
     only this): the same mini datasets built with `h4w_datasets.tfds_build`
     (build seconds, MiB on disk against the folder's), then in one process
     with cv2 on one thread, median of 5 interleaved rounds, CPU time:
     records/s of `reader[i]` (the folder reader also reads the image file's
     bytes, so both deliver the record and the encoded image) and examples/s
     of the pipeline's PositionSource (decode, crop, joints) from each path.
  5. worker transport (`--transport-only` runs only this): wall-clock
     samples/s of our loader with 1..--max-workers workers when every array
     goes through grain's queue pickled (worker_shared_memory_min_bytes=None,
     the default) and when every array goes through shared memory (0).
On a shared machine these move by tens of percent: rerun on a quiet one.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np

TRAINSET_3D = ('Human36M',)
TRAINSET_2D = ('MSCOCO', 'MPII')
PART_BOX_DATASETS = ('MSCOCO',)   # the others emit dummy hand/face boxes
INPUT_IMG_SHAPE = (512, 384)      # upstream cfg.input_img_shape (H, W)
OUTPUT_HM_SHAPE = (8, 8, 6)       # upstream cfg.output_hm_shape (D, H, W)
BODY_3D_SIZE, HAND_3D_SIZE, FACE_3D_SIZE = 2.0, 0.3, 0.3


def _rate(count, wall, cpu):
  return {'samples': count, 'wall_s': wall, 'cpu_s': cpu}


def _time_loop(fn, positions, warmup=2):
  """Calls fn(l) for every position; returns wall and CPU seconds of the timed part."""
  for l in positions[:warmup]:
    fn(l)
  wall, cpu = time.perf_counter(), time.process_time()
  for l in positions:
    fn(l)
  return _rate(len(positions), time.perf_counter() - wall, time.process_time() - cpu)


def _skipped_batches(workers):
  """Batches not timed: the first (worker start-up) and as many as the workers may
  have buffered meanwhile (torch's default prefetch_factor is 2 batches per worker)."""
  return 1 + 2 * workers


def _time_batches(iterator, num_batches, batch, skip):
  """Samples per wall second over `num_batches` batches after `skip` untimed ones."""
  for _ in range(skip):
    next(iterator)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  return num_batches * batch / (time.perf_counter() - start)


# ---------------------------------------------------------------------------
# Upstream side (child process: numpy, cv2, torch and smplx or upstream's code)


def _rot_aug_mat(rot):
  a = np.deg2rad(-rot)
  return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], np.float32)


def _patch_trans(cx, cy, width, height, scale, rot, inv=False):
  """The crop's affine from three float32 point pairs, as gen_trans_from_patch_cv."""
  a = np.pi * rot / 180
  sn, cs = np.sin(a), np.cos(a)
  half_h, half_w = height * scale * 0.5, width * scale * 0.5
  center = np.array([cx, cy], np.float32)
  src = np.stack([center, center + np.array([-half_h * sn, half_h * cs], np.float32),
                  center + np.array([half_w * cs, half_w * sn], np.float32)]).astype(np.float32)
  out_h, out_w = INPUT_IMG_SHAPE
  dst = np.array([[out_w / 2, out_h / 2], [out_w / 2, out_h], [out_w, out_h / 2]], np.float32)
  pair = (dst, src) if inv else (src, dst)
  return cv2.getAffineTransform(*pair).astype(np.float32)


def _to_other_db(values, src_names, dst_names):
  """Name-based remapping with upstream's per-call loop over the source joints."""
  out = np.zeros((len(dst_names),) + values.shape[1:], np.float32)
  for i, name in enumerate(src_names):
    if name in dst_names:
      out[dst_names.index(name)] = values[i]
  return out


class UpstreamEquivalent:
  """Upstream's per-sample training work, reimplemented (a torch map-style dataset).

  Same operations in the same order on the same dtypes as upstream's
  load_img / augmentation / process_db_coord / process_human_model_output and
  the dataset tails, with the PyPI smplx layer (batch 1, full mesh).
  """

  def __init__(self, work):
    import smplx
    import torch
    self.torch = torch
    self.plan = work['plan']
    self.datasets = work['datasets']
    self.t = work['tables']
    self.t['joint_names'] = tuple(self.t['joint_names'])
    self.t['orig_joint_names'] = tuple(self.t['orig_joint_names'])
    flags = {f'create_{k}': False for k in (
        'global_orient', 'body_pose', 'left_hand_pose', 'right_hand_pose', 'jaw_pose',
        'leye_pose', 'reye_pose', 'betas', 'expression', 'transl')}
    self.layer = smplx.create(work['human_model_path'], 'smplx', gender='neutral', use_pca=False,
                              use_face_contour=True, **flags)
    self.label = (f'REIMPLEMENTATION of upstream\'s per-sample work (this file), smplx '
                  f'{getattr(smplx, "__version__", "(PyPI)")} layer on torch {torch.__version__}')

  def __len__(self):
    return len(self.plan['reader'])

  def __getitem__(self, l):
    p = self.plan
    ds = self.datasets[p['reader'][l]]
    data = copy.deepcopy(ds['datalist'][p['index'][l]])
    scale, rot, flip = p['scale'][l], p['rot'][l], p['flip'][l]
    color = np.array(p['color'][l])
    img_shape = data['img_shape']

    img = cv2.imread(data['img_path'], cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    img = img[:, :, ::-1].copy().astype(np.float32)
    img = img.copy()
    bbox = data['bbox']
    cx, cy = float(bbox[0] + 0.5 * bbox[2]), float(bbox[1] + 0.5 * bbox[3])
    if flip:
      img = img[:, ::-1, :]
      cx = img.shape[1] - cx - 1
    trans = _patch_trans(cx, cy, float(bbox[2]), float(bbox[3]), scale, rot)
    patch = cv2.warpAffine(img, trans, INPUT_IMG_SHAPE[::-1], flags=cv2.INTER_LINEAR)
    patch = patch.astype(np.float32)
    _patch_trans(cx, cy, float(bbox[2]), float(bbox[3]), scale, rot, inv=True)
    patch = np.clip(patch * color[None, None, :], 0, 255)
    img = self.torch.from_numpy(patch.astype(np.float32).transpose(2, 0, 1)).contiguous() / 255.

    names = tuple(ds['joint_names'])
    joint_img = np.array(data['joint_img'], np.float32)
    if ds['is_3d']:
      joint_cam = np.array(data['joint_cam'], np.float32)
      joint_cam = (joint_cam - joint_cam[ds['root'], None]) / 1000
      joint_img = np.concatenate([joint_img[:, :2], joint_cam[:, 2:]], 1)
      joint_img[:, 2] = (joint_img[:, 2] / (BODY_3D_SIZE / 2) + 1) / 2. * OUTPUT_HM_SHAPE[0]
    else:
      joint_cam = np.zeros((len(names), 3), np.float32)
      joint_img = np.concatenate([joint_img[:, :2], np.zeros_like(joint_img[:, :1])], 1)
    joint_img, joint_cam, joint_valid, joint_trunc = self.db_coord(
        joint_img, joint_cam, np.array(data['joint_valid'], np.float32), flip, img_shape,
        ds['flip_pairs'], trans, rot, names)

    if data['smplx_param'] is not None:
      out = self.human_model_output(data['smplx_param'], data['cam_param'], flip, img_shape,
                                    trans, rot)
      smplx_pose_valid, smplx_joint_valid = out[6], out[7]
    else:
      smplx_pose_valid = np.zeros(53, np.float32)
      smplx_joint_valid = np.zeros(137, np.float32)
      out = (np.zeros((137, 3), np.float32), np.zeros((137, 3), np.float32),
             np.zeros((137, 1), np.float32), np.zeros(159, np.float32), np.zeros(10, np.float32),
             np.zeros(10, np.float32), smplx_pose_valid, smplx_joint_valid, False)
    for name in ds['rotation_invalid']:
      smplx_pose_valid[self.t['orig_joint_names'].index(name)] = 0
    smplx_pose_valid = np.tile(smplx_pose_valid[:, None], (1, 3)).reshape(-1)
    for name in ds['joint_invalid']:
      smplx_joint_valid[self.t['joint_names'].index(name)] = 0
    smplx_joint_valid = smplx_joint_valid[:, None]
    smplx_joint_trunc = smplx_joint_valid * out[2]
    if data['smplx_param'] is None:
      smplx_pose_valid[:] = 0
      smplx_joint_valid[:] = 0
      smplx_joint_trunc[:] = 0

    targets = {'joint_img': joint_img, 'joint_cam': joint_cam, 'smplx_joint_img': out[0],
               'smplx_joint_cam': out[1], 'smplx_pose': out[3], 'smplx_shape': out[4],
               'smplx_expr': out[5]}
    meta_info = {'joint_valid': joint_valid, 'joint_trunc': joint_trunc,
                 'smplx_joint_valid': smplx_joint_valid, 'smplx_joint_trunc': smplx_joint_trunc,
                 'smplx_pose_valid': smplx_pose_valid,
                 'smplx_shape_valid': float(data['smplx_param'] is not None),
                 'smplx_expr_valid': float(out[8]), 'is_3D': float(ds['is_3d'])}
    boxes = {}
    for part in ('lhand', 'rhand', 'face'):
      if ds['name'] in PART_BOX_DATASETS:
        boxes[part] = self.part_box(data[f'{part}_bbox'], flip, img_shape, trans)
      else:
        boxes[part] = (np.zeros((2, 2), np.float32), 0.0)
    if flip:
      boxes['lhand'], boxes['rhand'] = boxes['rhand'], boxes['lhand']
    for part, (box, valid) in boxes.items():
      targets[f'{part}_bbox_center'] = (box[0] + box[1]) / 2.
      targets[f'{part}_bbox_size'] = box[1] - box[0]
      meta_info[f'{part}_bbox_valid'] = valid
    return {'img': img}, targets, meta_info

  def db_coord(self, joint_img, joint_cam, joint_valid, flip, img_shape, flip_pairs, trans, rot,
               names):
    joint_img, joint_cam, joint_valid = joint_img.copy(), joint_cam.copy(), joint_valid.copy()
    if flip:
      joint_cam[:, 0] = -joint_cam[:, 0]
      joint_img[:, 0] = img_shape[1] - 1 - joint_img[:, 0]
      for a, b in flip_pairs:
        for arr in (joint_img, joint_cam, joint_valid):
          arr[a], arr[b] = arr[b].copy(), arr[a].copy()
    joint_cam = np.dot(_rot_aug_mat(rot), joint_cam.transpose(1, 0)).transpose(1, 0)
    xy1 = np.concatenate([joint_img[:, :2], np.ones_like(joint_img[:, :1])], 1)
    joint_img[:, :2] = np.dot(trans, xy1.transpose(1, 0)).transpose(1, 0)
    joint_img[:, 0] = joint_img[:, 0] / INPUT_IMG_SHAPE[1] * OUTPUT_HM_SHAPE[2]
    joint_img[:, 1] = joint_img[:, 1] / INPUT_IMG_SHAPE[0] * OUTPUT_HM_SHAPE[1]
    joint_trunc = joint_valid * self._inside(joint_img)
    dst = self.t['joint_names']
    return tuple(_to_other_db(x, names, dst)
                 for x in (joint_img, joint_cam, joint_valid, joint_trunc))

  @staticmethod
  def _inside(joint_img):
    d, h, w = OUTPUT_HM_SHAPE
    x, y, z = joint_img[:, 0], joint_img[:, 1], joint_img[:, 2]
    return ((x >= 0) * (x < w) * (y >= 0) * (y < h) * (z >= 0) * (z < d)).reshape(-1, 1).astype(
        np.float32)

  def human_model_output(self, param, cam, flip, img_shape, trans, rot):
    torch, t = self.torch, self.t
    rotation_valid = np.ones(53, np.float32)
    coord_valid = np.ones(137, np.float32)
    parts = {}
    for part, key, width in (('lhand', 'lhand_pose', 45), ('rhand', 'rhand_pose', 45)):
      if key in param and param[f'{part}_valid']:
        parts[part] = param[key]
      else:
        parts[part] = np.zeros(width, np.float32)
        rotation_valid[slice(*t['orig_joint_part'][part])] = 0
        coord_valid[slice(*t['joint_part'][part])] = 0
    if 'jaw_pose' in param and 'expr' in param and param['face_valid']:
      jaw, expr, expr_valid = param['jaw_pose'], param['expr'], True
    else:
      jaw, expr, expr_valid = np.zeros(3, np.float32), np.zeros(10, np.float32), False
      rotation_valid[slice(*t['orig_joint_part']['face'])] = 0
      coord_valid[slice(*t['joint_part']['face'])] = 0
    root = torch.FloatTensor(param['root_pose']).view(1, 3)
    body = torch.FloatTensor(param['body_pose']).view(-1, 3)
    lhand = torch.FloatTensor(parts['lhand']).view(-1, 3)
    rhand = torch.FloatTensor(parts['rhand']).view(-1, 3)
    jaw = torch.FloatTensor(jaw).view(-1, 3)
    shape = torch.FloatTensor(param['shape']).view(1, -1)
    expr = torch.FloatTensor(expr).view(1, -1)
    transl = torch.FloatTensor(param['trans']).view(1, -1)
    if 'R' in cam:
      cam_r = np.array(cam['R'], np.float32).reshape(3, 3)
      mat, _ = cv2.Rodrigues(root.numpy())
      vec, _ = cv2.Rodrigues(np.dot(cam_r, mat))
      root = torch.from_numpy(vec).view(1, 3)
    eye = torch.zeros((1, 3)).float()
    with torch.no_grad():
      output = self.layer(betas=shape, body_pose=body.view(1, -1), global_orient=root,
                          transl=transl, left_hand_pose=lhand.view(1, -1),
                          right_hand_pose=rhand.view(1, -1), jaw_pose=jaw.view(1, -1),
                          leye_pose=eye, reye_pose=eye, expression=expr)
    mesh_cam = output.vertices[0].numpy()
    joint_cam = output.joints[0].numpy()[t['joint_idx'], :]
    if 'R' in cam and 't' in cam:
      cam_t = np.array(cam['t'], np.float32).reshape(1, 3)
      root_cam = joint_cam[t['root'], None, :]
      shift = -root_cam + np.dot(cam_r, root_cam.transpose(1, 0)).transpose(1, 0) + cam_t
      joint_cam = joint_cam + shift
      mesh_cam = mesh_cam + shift
    pose = torch.cat((root, body, lhand, rhand, jaw))

    focal, princpt = cam['focal'], cam['princpt']
    joint_img = np.stack([joint_cam[:, 0] / joint_cam[:, 2] * focal[0] + princpt[0],
                          joint_cam[:, 1] / joint_cam[:, 2] * focal[1] + princpt[1],
                          joint_cam[:, 2]], 1)
    joint_cam = joint_cam - joint_cam[t['root'], None, :]
    for part, root_idx in (('lhand', t['lwrist']), ('rhand', t['rwrist']), ('face', t['neck'])):
      rows = slice(*t['joint_part'][part])
      joint_cam[rows] = joint_cam[rows] - joint_cam[root_idx, None, :]
    for part, size in (('body', BODY_3D_SIZE), ('lhand', HAND_3D_SIZE), ('rhand', HAND_3D_SIZE),
                       ('face', FACE_3D_SIZE)):
      rows = slice(*t['joint_part'][part])
      joint_img[rows, 2] = (joint_cam[rows, 2].copy() / (size / 2) + 1) / 2. * OUTPUT_HM_SHAPE[0]
    mesh_cam.copy()   # upstream's mesh_cam_orig

    if flip:
      joint_cam[:, 0] = -joint_cam[:, 0]
      joint_img[:, 0] = img_shape[1] - 1 - joint_img[:, 0]
      for a, b in t['flip_pairs']:
        joint_cam[a], joint_cam[b] = joint_cam[b].copy(), joint_cam[a].copy()
        joint_img[a], joint_img[b] = joint_img[b].copy(), joint_img[a].copy()
        coord_valid[a], coord_valid[b] = coord_valid[b].copy(), coord_valid[a].copy()
    xy1 = np.concatenate([joint_img[:, :2], np.ones_like(joint_img[:, :1])], 1)
    joint_img[:, :2] = np.dot(trans, xy1.transpose(1, 0)).transpose(1, 0)[:, :2]
    joint_img[:, 0] = joint_img[:, 0] / INPUT_IMG_SHAPE[1] * OUTPUT_HM_SHAPE[2]
    joint_img[:, 1] = joint_img[:, 1] / INPUT_IMG_SHAPE[0] * OUTPUT_HM_SHAPE[1]
    joint_trunc = self._inside(joint_img)
    rot_mat = _rot_aug_mat(rot)
    joint_cam = np.dot(rot_mat, joint_cam.transpose(1, 0)).transpose(1, 0)
    if flip:
      for a, b in t['orig_flip_pairs']:
        pose[a, :], pose[b, :] = pose[b, :].clone(), pose[a, :].clone()
        rotation_valid[a], rotation_valid[b] = rotation_valid[b].copy(), rotation_valid[a].copy()
      pose[:, 1:3] *= -1
    pose = pose.numpy()
    mat, _ = cv2.Rodrigues(pose[0])
    vec, _ = cv2.Rodrigues(np.dot(rot_mat, mat))
    pose[0] = vec.reshape(3)
    shape[(shape.abs() > 3).any(dim=1)] = 0.
    return (joint_img, joint_cam, joint_trunc, pose.reshape(-1), shape.numpy().reshape(-1),
            expr.numpy().reshape(-1), rotation_valid, coord_valid, expr_valid)

  @staticmethod
  def part_box(bbox, flip, img_shape, trans):
    """MSCOCO's process_hand_face_bbox: xyxy -> axis-aligned warped corners (hm units)."""
    if bbox is None:
      return np.array([0, 0, 1, 1], np.float32).reshape(2, 2), 0.0
    bbox = np.array(bbox, np.float32).reshape(2, 2)
    if flip:
      bbox[:, 0] = img_shape[1] - bbox[:, 0] - 1
      bbox[0, 0], bbox[1, 0] = bbox[1, 0].copy(), bbox[0, 0].copy()
    x0, y0, x1, y1 = bbox.reshape(4).tolist()
    quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
    xy = np.dot(trans, np.concatenate([quad, np.ones_like(quad[:, :1])], 1).T).T[:, :2]
    xy[:, 0] = xy[:, 0] / INPUT_IMG_SHAPE[1] * OUTPUT_HM_SHAPE[2]
    xy[:, 1] = xy[:, 1] / INPUT_IMG_SHAPE[0] * OUTPUT_HM_SHAPE[1]
    box = np.array([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()], np.float32)
    return box.reshape(2, 2), 1.0


def _vis_stub(name):
  if name.startswith('__'):
    raise AttributeError(name)
  return lambda *args, **kwargs: None


class UpstreamReal:
  """Upstream's own dataset classes, indexed by the shared plan (a torch map-style dataset).

  cwd must be a folder `main/` whose sibling `data/` holds the datasets:
  upstream opens '../data/<NAME>/...'.
  """

  def __init__(self, work):
    import torch
    root = Path(work['upstream'])
    sys.path.insert(0, str(root / 'main'))
    import config  # upstream's main/config.py (adds common/ and data/<NAME> to sys.path)
    config.cfg.human_model_path = work['human_model_path']
    vis = types.ModuleType('utils.vis')   # pyrender at import; never called on this path
    vis.__file__ = str(root / 'common' / 'utils' / 'vis.py')
    vis.__getattr__ = _vis_stub
    sys.modules['utils.vis'] = vis
    import torchvision.transforms
    import utils.preprocessing as upstream_pre
    self.plan = work['plan']
    self._aug = None
    upstream_pre.get_aug_config = lambda: self._aug
    to_tensor = torchvision.transforms.ToTensor()
    self.datasets = []
    for ds in work['datasets']:
      module = __import__(ds['name'])
      dataset = getattr(module, ds['name'])(to_tensor, 'train')
      if len(dataset) != len(ds['datalist']):
        raise RuntimeError(f"upstream's {ds['name']} has {len(dataset)} training samples, our "
                           f"reader {len(ds['datalist'])}: the plan's indices would not match")
      self.datasets.append(dataset)
    self.label = (f"upstream's own dataset classes from {root} (torch {torch.__version__}, "
                  f'torchvision {torchvision.__version__})')

  def __len__(self):
    return len(self.plan['reader'])

  def __getitem__(self, l):
    p = self.plan
    self._aug = (p['scale'][l], p['rot'][l], np.array(p['color'][l]), p['flip'][l])
    return self.datasets[p['reader'][l]][p['index'][l]]


def upstream_side(work_dir: Path) -> None:
  """Child process: times upstream's loader, writes work_dir/upstream_result.json."""
  import torch
  work = json.loads((work_dir / 'work.json').read_text())
  if work['upstream']:
    os.chdir(work_dir / 'main')
    dataset = UpstreamReal(work)
  else:
    dataset = UpstreamEquivalent(work)
  print(f'  upstream side: {dataset.label}', flush=True)
  threads = (torch.get_num_threads(), cv2.getNumThreads())
  torch.set_num_threads(1)
  cv2.setNumThreads(1)
  result = {'label': dataset.label,
            'per_core': _time_loop(dataset.__getitem__, list(range(work['samples'])))}
  cv2.setNumThreads(threads[1])
  result['scaling'] = {}
  for workers in work['workers']:
    torch.set_num_threads(1 if workers == 0 else threads[0])   # workers set 1 themselves
    loader = torch.utils.data.DataLoader(dataset, batch_size=work['batch'], shuffle=False,
                                         num_workers=workers, drop_last=True)
    result['scaling'][workers] = _time_batches(iter(loader), work['num_batches'], work['batch'],
                                               _skipped_batches(workers))
    print(f'  upstream, {workers} workers: {result["scaling"][workers]:.1f} samples/s', flush=True)
  (work_dir / 'upstream_result.json').write_text(json.dumps(result))


# ---------------------------------------------------------------------------
# Our side and the orchestration (this interpreter: jax, grain, h4w_jax, h4w_datasets)


def _parse_shape(text):
  h, w = (int(v) for v in text.lower().split('x'))
  return h, w


def write_data(data_root: Path, human_model_path, num: int, image_shape) -> None:
  """The three mini datasets; `image_shape` (H, W) overrides the writers' 240x320."""
  from h4w_datasets import human36m, synthetic
  names = TRAINSET_3D + TRAINSET_2D
  if image_shape is None:
    synthetic.write_mini_datasets(data_root, human_model_path, names, num=num)
    return
  render, nominal = synthetic.render_scenes, human36m.nominal_intrinsics
  synthetic.render_scenes = lambda *a, **k: render(*a, **{**k, 'image_shape': image_shape})
  human36m.nominal_intrinsics = lambda shape=image_shape: nominal(shape)
  try:
    synthetic.write_mini_datasets(data_root, human_model_path, names, num=num)
  finally:
    synthetic.render_scenes, human36m.nominal_intrinsics = render, nominal


def upstream_datalist(reader):
  """A reader's records in the form upstream's datalist holds them (JSON-like values)."""
  out = []
  for i in range(len(reader)):
    r = reader[i]
    has = lambda key: float(r[key]) > 0
    entry = {'img_path': str(r['img_path']), 'img_shape': [int(v) for v in r['img_shape']],
             'bbox': r['bbox'].tolist(), 'joint_img': r['joint_img'][:, :2].tolist(),
             'joint_valid': r['joint_valid'].tolist(), 'smplx_param': None,
             'cam_param': {'focal': r['cam_focal'].tolist(), 'princpt': r['cam_princpt'].tolist()}}
    if reader.info.is_3d:   # upstream keeps camera-frame millimetres until __getitem__
      entry['joint_cam'] = (r['joint_cam'] * 1000).tolist()
    if not np.array_equal(r['cam_R'], np.eye(3)) or np.any(r['cam_t']):
      entry['cam_param'].update(R=r['cam_R'].tolist(), t=r['cam_t'].tolist())
    if has('smplx_valid'):
      param = {k.removeprefix('smplx_'): r[k].tolist() for k in (
          'smplx_root_pose', 'smplx_body_pose', 'smplx_lhand_pose', 'smplx_rhand_pose',
          'smplx_jaw_pose', 'smplx_shape', 'smplx_expr', 'smplx_trans')}
      param.update(lhand_valid=has('smplx_lhand_valid'), rhand_valid=has('smplx_rhand_valid'),
                   face_valid=has('smplx_face_valid'))
      entry['smplx_param'] = param
    for part in ('lhand', 'rhand', 'face'):
      entry[f'{part}_bbox'] = r[f'{part}_bbox'].tolist() if has(f'{part}_bbox_valid') else None
    out.append(entry)
  return out


def make_work(readers, source, args, total, human_model_path):
  """Everything the upstream side needs, as JSON: plan, datalists, joint tables."""
  from h4w_datasets import transforms as tf
  from h4w_jax.common import joint_sets as js
  plan = {'reader': [], 'index': [], 'scale': [], 'rot': [], 'color': [], 'flip': []}
  for l in range(total):
    reader_id, index, rng, _ = source.sample_of(source.global_position(l))
    aug = tf.sample_aug(rng)
    for key, value in zip(plan, (reader_id, index, aug.scale, aug.rot, list(aug.color_scale),
                                 aug.do_flip)):
      plan[key].append(value)
  datasets = [{'name': r.info.name, 'joint_names': list(r.info.joint_names),
               'flip_pairs': [list(p) for p in r.info.flip_pairs], 'is_3d': r.info.is_3d,
               'root': list(r.info.joint_names).index('Pelvis'),
               'rotation_invalid': list(r.info.smplx_rotation_invalid),
               'joint_invalid': list(r.info.smplx_joint_invalid),
               'datalist': upstream_datalist(r)} for r in readers]
  tables = {'joint_names': list(js.JOINT_NAMES), 'orig_joint_names': list(js.ORIG_JOINT_NAMES),
            'joint_idx': js.JOINT_IDX.tolist(), 'joint_part': js.JOINT_PART,
            'orig_joint_part': js.ORIG_JOINT_PART, 'flip_pairs': js.FLIP_PAIRS,
            'orig_flip_pairs': js.ORIG_FLIP_PAIRS, 'root': js.ROOT_IDX,
            'lwrist': js.LWRIST_IDX, 'rwrist': js.RWRIST_IDX, 'neck': js.NECK_IDX}
  return {'plan': plan, 'datasets': datasets, 'tables': tables,
          'human_model_path': str(human_model_path),
          'upstream': str(args.upstream.resolve()) if args.upstream else '',
          'samples': args.samples, 'batch': args.batch, 'num_batches': args.num_batches,
          'workers': list(range(args.max_workers + 1))}


def time_targets(source, human_model_path, batch, repeats):
  """Jitted train_batch on one batch of examples: compile s, wall and CPU s per batch."""
  import jax
  from h4w_jax.models import outputs, targets
  examples = [source[l] for l in range(batch)]
  host = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
  layer = outputs.smplx_layer(human_model_path)
  rows = {}
  for name, lay in (('full SMPL-X layer (as training.train_step)', layer),
                    ('SMPLXJoints cut', targets.smplx_joints(layer))):
    fn = jax.jit(targets.train_batch)
    dev = jax.device_put(host)
    start = time.perf_counter()
    jax.block_until_ready(fn(lay, dev))
    compile_s = time.perf_counter() - start
    walls, cpus = [], []
    for _ in range(repeats):
      wall, cpu = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn(lay, dev))
      walls.append(time.perf_counter() - wall)
      cpus.append(time.process_time() - cpu)
    rows[name] = (compile_s, statistics.median(walls), statistics.median(cpus))
  return rows


class _FolderWithBytes:
  """The folder reader, also reading the image file: what a TFDS record carries."""

  def __init__(self, reader):
    self.reader = reader

  def __len__(self):
    return len(self.reader)

  def __getitem__(self, i):
    record = self.reader[i]
    record['img_bytes'] = Path(record['img_path']).read_bytes()
    return record


def _median_rates(fns, count, rounds):
  """{name: median over `rounds` of count / CPU-s}, the functions interleaved per round."""
  rates = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      cpu = time.process_time()
      for i in range(count):
        fn(i)
      rates[name].append(count / max(time.process_time() - cpu, 1e-9))
  return {name: statistics.median(r) for name, r in rates.items()}


def _folder_mib(path: Path) -> float:
  return sum(p.stat().st_size for p in path.rglob('*') if p.is_file()) / 2**20


def compare_tfds(data_root: Path, work_dir: Path, config, samples: int, rounds: int = 5):
  """Section 4: build the TFDS datasets, then records/s and examples/s of both paths."""
  import importlib.util
  if importlib.util.find_spec('tensorflow_datasets') is None:
    print('\n4. TFDS vs folder: skipped, tensorflow-datasets is not installed '
          '(pip install -e ".[tfds]")')
    return
  from h4w_datasets import pipeline, registry, tfds_build
  tfds_dir = work_dir / 'tfds'
  builds = {}
  for name in TRAINSET_3D + TRAINSET_2D:
    start = time.perf_counter()
    builder = tfds_build.build(name, data_root, tfds_dir)
    builds[name] = (time.perf_counter() - start, _folder_mib(data_root / name),
                    _folder_mib(Path(builder.data_dir)))
  groups = {source: registry.make_groups(data_root, TRAINSET_3D, TRAINSET_2D, source=source,
                                         tfds_data_dir=tfds_dir)
            for source in ('folder', 'tfds')}
  threads = cv2.getNumThreads()
  cv2.setNumThreads(1)
  print(f'\n4. TFDS vs folder, per worker (one process, cv2 on 1 thread, CPU time, median '
        f'of {rounds} interleaved rounds):')
  print(f'{"dataset":>10} {"records":>8} {"folder MiB":>11} {"TFDS MiB":>9} {"build s":>8} '
        f'{"folder rec/s":>13} {"TFDS rec/s":>11}')
  for k, name in enumerate(TRAINSET_3D + TRAINSET_2D):
    folder = _FolderWithBytes(sum(groups['folder'], [])[k])
    stored = sum(groups['tfds'], [])[k]
    order = np.random.default_rng(k).permutation(len(folder))
    rates = _median_rates({'folder': lambda i: folder[int(order[i])],
                           'tfds': lambda i: stored[int(order[i])]}, len(folder), rounds)
    build_s, folder_mib, tfds_mib = builds[name]
    print(f'{name:>10} {len(folder):8d} {folder_mib:11.2f} {tfds_mib:9.2f} {build_s:8.2f} '
          f'{rates["folder"]:13.0f} {rates["tfds"]:11.0f}')
  sources = {s: pipeline.build(g, config)[1] for s, g in groups.items()}
  count = min(samples, len(sources['folder']))
  rates = _median_rates({s: src.__getitem__ for s, src in sources.items()}, count, rounds)
  print(f'examples/CPU-s of the training mixture ({count} samples): folder '
        f'{rates["folder"]:.1f}, TFDS {rates["tfds"]:.1f}, TFDS / folder '
        f'{rates["tfds"] / rates["folder"]:.2f}')
  cv2.setNumThreads(threads)


def compare_transport(source, args, epochs: int, rounds: int = 3) -> None:
  """Section 5: the same loader with worker output pickled through grain's queue or in
  shared-memory segments (median of `rounds` interleaved runs per worker count)."""
  from h4w_datasets import pipeline
  print(f'5. Worker transport (wall clock, batch {args.batch}, {args.num_batches} batches timed '
        f'after 1 + 2 x workers, median of {rounds}):')
  print(f'{"workers":>7} {"pickled/s":>10} {"shm/s":>8} {"pickled/shm":>12}')
  for workers in range(1, args.max_workers + 1):
    rates = {None: [], 0: []}
    for _ in range(rounds):
      for min_bytes in rates:
        cfg = pipeline.PipelineConfig(seed=0, local_batch=args.batch, num_epochs=epochs,
                                      num_workers=workers, read_threads=1,
                                      worker_shared_memory_min_bytes=min_bytes)
        batches = iter(pipeline.make_dataset(source, cfg))
        rates[min_bytes].append(_time_batches(batches, args.num_batches, args.batch,
                                              _skipped_batches(workers)))
        pipeline.close(batches)
    pickled, shm = (float(np.median(rates[k])) for k in (None, 0))
    print(f'{workers:7d} {pickled:10.1f} {shm:8.1f} {pickled / shm:12.2f}', flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--num', type=int, default=8, help='images per synthetic dataset')
  parser.add_argument('--image-size', type=_parse_shape, default=None, metavar='HxW',
                      help="synthetic image size, e.g. 1000x1000 (default: the writers' 240x320)")
  parser.add_argument('--batch', type=int, default=24, help="loader batch (upstream's 24 per GPU)")
  parser.add_argument('--samples', type=int, default=96, help='samples timed per core')
  parser.add_argument('--num-batches', type=int, default=8,
                      help='batches timed per worker count')
  parser.add_argument('--max-workers', type=int, default=os.cpu_count() or 1)
  parser.add_argument('--repeats', type=int, default=10, help='device-targets repeats')
  parser.add_argument('--human-model-path', type=Path, default=None,
                      help='human_model_files (default: synthetic files)')
  parser.add_argument('--upstream', type=Path, default=None,
                      help='a Hand4Whole_RELEASE checkout: time its own dataset classes')
  parser.add_argument('--torch-python', default=sys.executable,
                      help='interpreter for the upstream side (torch + smplx, or torch + '
                           'torchvision + pycocotools with --upstream)')
  parser.add_argument('--tfds-only', action='store_true',
                      help='only section 4 (TFDS vs folder per worker): no upstream side')
  parser.add_argument('--transport-only', action='store_true',
                      help='only section 5 (worker transport: pickled vs shared memory)')
  parser.add_argument('--_upstream-side', dest='upstream_side', type=Path, default=None,
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.upstream_side is not None:
    return upstream_side(args.upstream_side)

  import jax
  from h4w_datasets import pipeline, registry

  tmp = tempfile.TemporaryDirectory(prefix='h4w_bench_')
  work_dir = Path(tmp.name)
  hmf = args.human_model_path
  if hmf is None and args.upstream:
    # upstream unpickles SMPL and MANO with plain pickle: no chumpy objects allowed
    from smplx_jax import synthetic as body_synthetic
    print(f'Writing chumpy-free synthetic body models to {work_dir / "hmf"} ...', flush=True)
    hmf = body_synthetic.write_human_model_files(work_dir / 'hmf', seed=0, chumpy=False)
  elif hmf is None:
    from smplx_jax.demo import default_model_path
    hmf = default_model_path()
  data_root = work_dir / 'data'
  (work_dir / 'main').mkdir()
  start = time.perf_counter()
  print(f'Writing synthetic {", ".join(TRAINSET_3D + TRAINSET_2D)} (num={args.num}, '
        f'{args.image_size or "default"} images) ...', flush=True)
  write_data(data_root, hmf, args.num, args.image_size)
  print(f'  {time.perf_counter() - start:.1f} s', flush=True)

  groups = registry.make_groups(data_root, TRAINSET_3D, TRAINSET_2D)
  readers = [r for g in groups for r in g]
  total = max(args.samples + 2,
              (args.num_batches + _skipped_batches(args.max_workers)) * args.batch)
  config = pipeline.PipelineConfig(seed=0, local_batch=args.batch, num_epochs=1)
  _, source = pipeline.build(groups, config)
  epochs = math.ceil(total / (source.steps_per_epoch * args.batch))
  config = pipeline.PipelineConfig(seed=0, local_batch=args.batch, num_epochs=epochs)
  _, source = pipeline.build(groups, config)
  if args.tfds_only:
    compare_tfds(data_root, work_dir, config, args.samples)
    tmp.cleanup()
    return
  if args.transport_only:
    compare_transport(source, args, epochs)
    tmp.cleanup()
    return
  work = make_work(readers, source, args, total, hmf)
  (work_dir / 'work.json').write_text(json.dumps(work))
  shapes = sorted({tuple(e['img_shape']) for d in work['datasets'] for e in d['datalist']})
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind}; cv2 {cv2.__version__}; '
        f'{os.cpu_count()} CPUs; readers ' + ', '.join(f'{r.info.name} {len(r)}' for r in readers)
        + f'; image sizes (H, W) {shapes}')

  # ---------------------------------------------------------------- upstream side
  print('Upstream side (child process):', flush=True)
  subprocess.run([args.torch_python, str(Path(__file__).resolve()), '--_upstream-side',
                  str(work_dir)], check=True)
  upstream = json.loads((work_dir / 'upstream_result.json').read_text())

  # ---------------------------------------------------------------- our side
  threads = cv2.getNumThreads()
  cv2.setNumThreads(1)
  ours = _time_loop(source.__getitem__, list(range(args.samples)))
  cv2.setNumThreads(threads)
  scaling = {}
  for workers in work['workers']:
    cfg = pipeline.PipelineConfig(seed=0, local_batch=args.batch, num_epochs=epochs,
                                  num_workers=workers, read_threads=1)
    scaling[workers] = _time_batches(iter(pipeline.make_dataset(source, cfg)), args.num_batches,
                                     args.batch, _skipped_batches(workers))
    print(f'  ours, {workers} workers: {scaling[workers]:.1f} samples/s', flush=True)
  targets_rows = time_targets(source, hmf, args.batch, args.repeats)

  # ---------------------------------------------------------------- report
  print(f'\nUpstream side: {upstream["label"]}.')
  print(f'1. Per core ({args.samples} samples, one process, cv2/torch on 1 thread):')
  print(f'{"":>10} {"samples/CPU-s":>14} {"CPU ms/sample":>14} {"samples/wall-s":>15}')
  per_core = {}
  for name, r in (('upstream', upstream['per_core']), ('ours', ours)):
    per_core[name] = r['samples'] / r['cpu_s']
    print(f'{name:>10} {per_core[name]:14.1f} {1e3 / per_core[name]:14.2f} '
          f'{r["samples"] / r["wall_s"]:15.1f}')
  print(f'{"ratio":>10} {per_core["ours"] / per_core["upstream"]:14.2f}   (ours / upstream, '
        'target >= 3)')

  print(f'\n2. Worker scaling (wall clock, batch {args.batch}, {args.num_batches} batches timed '
        'after 1 + 2 x workers; ours with 0 workers: grain in-process, 1 read thread):')
  print(f'{"workers":>7} {"upstream/s":>11} {"per worker":>11} {"ours/s":>9} {"per worker":>11} '
        f'{"ratio":>6}')
  for workers in work['workers']:
    up, us = upstream['scaling'][str(workers)], scaling[workers]
    per = lambda v: f'{v / workers:11.1f}' if workers else f'{"":>11}'
    print(f'{workers:7d} {up:11.1f} {per(up)} {us:9.1f} {per(us)} {us / up:6.2f}')

  device = jax.devices()[0]
  print(f'\n3. Device targets: jitted targets.train_batch, batch {args.batch}, on '
        f'{device.device_kind} (median of {args.repeats}; transfer and compile not included):')
  print(f'{"layer":>44} {"compile s":>10} {"wall ms/sample":>15} {"CPU ms/sample":>14}')
  for name, (compile_s, wall, cpu) in targets_rows.items():
    print(f'{name:>44} {compile_s:10.1f} {wall / args.batch * 1e3:15.2f} '
          f'{cpu / args.batch * 1e3:14.2f}')
  if device.platform == 'cpu':
    cpu_ms = targets_rows['full SMPL-X layer (as training.train_step)'][2] / args.batch * 1e3
    combined = 1e3 / (1e3 / per_core['ours'] + cpu_ms)
    print(f'   ours + targets on this CPU: {combined:.1f} samples/CPU-s, '
          f'{combined / per_core["upstream"]:.2f}x upstream per core')
  compare_tfds(data_root, work_dir, config, args.samples)
  tmp.cleanup()


if __name__ == '__main__':
  main()
