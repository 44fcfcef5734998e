"""Deterministic fake weights, images and train targets for the hand-only Pose2Pose model (stage 2).

numpy only: the throwaway harness that ran upstream's own hand model to make
tests/data/stage2_model_goldens*.npz built the same arrays from the same code (see
tests/data/README.md), and the JAX parity tests rebuild them here. Random numbers come from
np.random.RandomState (frozen legacy streams), each tensor from its own stream seeded by
(seed, CRC-32 of its key), so values do not depend on key order or numpy release.

Layouts are upstream's: state-dict tensors torch-shaped (OIHW convs, (out, in) linears) with the
'module.' prefix (DataParallel); images channels-last (B, 256, 256, 3) float32 in [0, 1]
(the harness transposes them to NCHW for torch).
"""

import json
import math
import re
import zlib
from pathlib import Path

import numpy as np

MANIFEST_PATH = Path(__file__).parent / 'data' / 'state_dict_manifest_hand.json'

IMG = 256                  # input_img_shape (256, 256)
HM = (8, 8, 8)             # output_hm_shape (D, H, W)
NUM_JOINTS = 21            # mano.joint_num (wrist + 4 x 5 finger joints, fingertips included)
NUM_POSE = 48              # 16 MANO joints x 3 (root first)

# Gains: a weight std of gain / sqrt(fan_in * ms), ms = the mean square of the layer's input
# (INPUT_MS, measured on the seed-0 fakes in test mode, rounded; fixed constants).
POSITION_GAIN = 8.0        # per-joint direction shared by the joint's 8 depth channels
POSITION_DEPTH_GAIN = 1.0  # plus a per-(joint, depth) direction
POSITION_BIAS_STD = 0.5
POSE6D_GAIN = 0.3          # 6D outputs: identity + about 0.3
SHAPE_GAIN = 0.5
CAM_XY_GAIN = 0.02         # t_x, t_y (metres): a few mm to cm
CAM_XY_BIAS = (0.06, 0.0)  # the synthetic MANO wrist is at the origin with the fingers along -x:
                           # shifting +x by ~6 cm centres the hand in the crop
CAM_Z_BIAS = 1.0           # t_z = 7.8125 * sigmoid(1.0 + ...) = about 5.7 m: the ~0.19 m synthetic
                           # hand then spans about 170 px of the 256 px crop (focal 5000)
CAM_Z_GAIN = 0.2

INPUT_MS = {
    'feat': 0.85,       # backbone output (B, 2048, 8, 8), test mode
    'gap': 0.78,        # its global average (shape / camera heads)
    'rot_feat': 1.10,   # RotationNet linear input: 21 joints x (512 sampled + 3 coords)
}


def load_manifest(path=MANIFEST_PATH):
  with open(path) as f:
    return json.load(f)


def _rng(key, seed):
  return np.random.RandomState([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode('utf-8'))])


def _normal(key, seed, shape, std, mean=0.0):
  return (mean + std * _rng(key, seed).standard_normal(size=tuple(shape))).astype(np.float32)


def _fan_in(shape):
  return int(np.prod(shape[1:]))


def _closing_bn(name, manifest):
  """True for the BatchNorm closing a residual branch (Bottleneck bn3, BasicBlock bn2)."""
  m = re.search(r'^(.*layer\d+\.\d+)\.bn(\d)\.', name)
  if m is None:
    return False
  block, idx = m.group(1), int(m.group(2))
  return idx == 3 or (idx == 2 and f'{block}.bn3.weight' not in manifest)


def _head_value(name, shape, seed):
  n = name.removeprefix('module.')
  fan = _fan_in(shape) if len(shape) > 1 else 0

  def lin(gain, ms):
    return _normal(name, seed, shape, gain / math.sqrt(fan * ms))

  identity6 = np.array([1, 0, 0, 1, 0, 0], np.float32)  # identity in upstream's interleaved 6D layout
  if n == 'position_net.conv.0.weight':
    depth = HM[0]  # channel j * 8 + d
    std = 1.0 / math.sqrt(fan * INPUT_MS['feat'])
    noise = _rng(name, seed).standard_normal(size=(shape[0] // depth, depth + 1) + tuple(shape[1:]))
    w = POSITION_GAIN * noise[:, :1] + POSITION_DEPTH_GAIN * noise[:, 1:]
    return (std * w).reshape(shape).astype(np.float32)
  if n == 'position_net.conv.0.bias':
    return _normal(name, seed, shape, POSITION_BIAS_STD)
  if n in ('rotation_net.root_pose_out.0.weight', 'rotation_net.pose_out.0.weight'):
    return lin(POSE6D_GAIN, INPUT_MS['rot_feat'])
  if n in ('rotation_net.root_pose_out.0.bias', 'rotation_net.pose_out.0.bias'):
    return np.tile(identity6, shape[0] // 6) + _normal(name, seed, shape, 0.05)
  if n == 'rotation_net.shape_out.0.weight':
    return lin(SHAPE_GAIN, INPUT_MS['gap'])
  if n == 'rotation_net.shape_out.0.bias':
    return _normal(name, seed, shape, 0.1)
  if n == 'rotation_net.cam_out.0.weight':
    w = lin(1.0, INPUT_MS['gap'])
    return w * np.array([CAM_XY_GAIN, CAM_XY_GAIN, CAM_Z_GAIN], np.float32)[:, None]
  if n == 'rotation_net.cam_out.0.bias':
    return np.array([CAM_XY_BIAS[0], CAM_XY_BIAS[1], CAM_Z_BIAS], np.float32) + _normal(name, seed, shape, 0.01)
  return None


def fake_state_dict(manifest, seed=0):
  """All keys of the hand snapshot manifest (335, 'module.' prefix) as numpy arrays.

  * ResNet-50 and the RotationNet 1x1 conv (2048->512): He-normal weights std sqrt(2/fan_in),
    conv biases N(0, 0.05).
  * BatchNorm: weight 1 + N(0, 0.1), times 0.2 for the BN closing each residual branch
    (Bottleneck bn3), so each block adds a fraction of its input's variance and features stay O(1);
    bias N(0, 0.05); running_mean N(0, 0.05); running_var exp(N(0, 0.1)); num_batches_tracked 0.
  * PositionNet 1x1 conv (2048 -> 21*8, channel j*8+d): (POSITION_GAIN*u_j + POSITION_DEPTH_GAIN*v_jd)
    / sqrt(fan_in * ms), bias N(0, 0.5): soft-argmax coordinates spread over the 8x8x8 volume.
  * 6D heads (root 6, fingers 90): bias = identity 6D per joint + N(0, 0.05), weights adding about
    POSE6D_GAIN (rotations of a few tenths of a radian, never exactly the identity).
  * shape head: gain 0.5, bias N(0, 0.1). Camera head: see CAM_* constants.
  """
  out = {}
  for name, info in manifest.items():
    shape = tuple(info['shape'])
    if name.endswith('num_batches_tracked'):
      out[name] = np.zeros(shape, np.int64)
      continue
    head = _head_value(name, shape, seed)
    if head is not None:
      value = head
    elif name.endswith('.running_mean'):
      value = _normal(name, seed, shape, 0.05)
    elif name.endswith('.running_var'):
      value = np.exp(_normal(name, seed, shape, 0.1).astype(np.float64))
    elif name.rsplit('.', 1)[0] + '.running_mean' in manifest:  # BN weight / bias
      if name.endswith('.weight'):
        value = _normal(name, seed, shape, 0.1, mean=1.0)
        if _closing_bn(name, manifest):
          value = value * 0.2
      else:
        value = _normal(name, seed, shape, 0.05)
    elif name.endswith('.weight'):
      value = _normal(name, seed, shape, math.sqrt(2.0 / _fan_in(shape)))
    else:
      value = _normal(name, seed, shape, 0.05)
    value = np.asarray(value, dtype=np.dtype(info['dtype']))
    assert value.shape == shape, (name, value.shape, shape)
    out[name] = value
  return out


def fake_images(batch, seed=0):
  """(B, 256, 256, 3) float32 in [0, 1], channels-last: smooth patterns.

  Per channel: 4 plane waves (periods >= 40 px) + 3 Gaussian blobs (sigma 10-40 px),
  min-max scaled to [lo, hi] with lo ~ U(0, 0.4), hi ~ U(0.6, 1) drawn per image and channel
  (so that the global statistics, hence the shape / camera heads, differ between samples).
  """
  rng = np.random.RandomState([int(seed) & 0xFFFFFFFF, 0x5A2D])
  y = np.arange(IMG, dtype=np.float64)[:, None]
  x = np.arange(IMG, dtype=np.float64)[None, :]
  imgs = np.zeros((batch, IMG, IMG, 3), np.float64)
  for b in range(batch):
    for c in range(3):
      v = np.zeros((IMG, IMG))
      for _ in range(4):
        fy, fx = rng.uniform(-1.0, 1.0, size=2) * (2 * math.pi / 40.0)
        fy, fx = fy * rng.uniform(0.15, 1.0), fx * rng.uniform(0.15, 1.0)
        phase = rng.uniform(0, 2 * math.pi)
        v += rng.uniform(0.3, 1.0) * np.sin(fy * y + fx * x + phase)
      for _ in range(3):
        cy, cx = rng.uniform(0, IMG), rng.uniform(0, IMG)
        sigma = rng.uniform(10.0, 40.0)
        v += rng.uniform(-2.0, 2.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma ** 2))
      v = (v - v.min()) / max(v.max() - v.min(), 1e-12)
      lo, hi = rng.uniform(0.0, 0.4), rng.uniform(0.6, 1.0)
      imgs[b, :, :, c] = lo + (hi - lo) * v
  return imgs.astype(np.float32)


# Sample kinds of fake_targets, cycling with the sample index (B = 4 covers all four):
KINDS = ('interhand', 'freihand', 'mscoco', 'interhand_no_mano')


def fake_targets(batch, seed=0):
  """Train-mode (targets, meta_info) with upstream's hand keys and shapes, all float32.

  Sample b is of kind KINDS[b % 4], mimicking what each dataset's __getitem__ returns:
    'interhand': joint_* targets valid (80% valid, truncation 0 outside the 8x8x8 volume), is_3D 1,
                 MANO targets valid.
    'freihand':  joint_img / joint_cam targets zero and joint_valid / joint_trunc 0 (FreiHAND has
                 only MANO targets), is_3D 1, MANO targets valid.
    'mscoco':    joint_img valid from keypoints (70%), z target 0, joint_cam zero (dummy), is_3D 0,
                 MANO targets valid.
    'interhand_no_mano': joint_* as 'interhand', MANO targets zero with every MANO mask 0.
  targets: joint_img, mano_joint_img (B,21,3) heatmap units (x,y in [-0.5,8.5], z in [0,8]);
           joint_cam, mano_joint_cam (B,21,3) metres, wrist-relative (row 0 = 0), N(0, 0.05);
           mano_pose (B,48) N(0, 0.3); mano_shape (B,10) N(0, 1).
  meta_info: joint_valid, joint_trunc, mano_joint_valid, mano_joint_trunc (B,21,1);
             mano_pose_valid (B,48); mano_shape_valid (B,); is_3D (B,).
  Upstream's default_collate would make the scalar flags float64; these are float32.
  """
  rng = np.random.RandomState([int(seed) & 0xFFFFFFFF, 0x7A27])
  d, h, w = HM
  J = NUM_JOINTS

  def inside(img):
    return ((img[..., 0] >= 0) & (img[..., 0] < w) & (img[..., 1] >= 0) & (img[..., 1] < h)
            & (img[..., 2] >= 0) & (img[..., 2] < d)).astype(np.float64)

  joint_img = np.stack([rng.uniform(-0.5, w + 0.5, (batch, J)), rng.uniform(-0.5, h + 0.5, (batch, J)),
                        rng.uniform(0, d, (batch, J))], -1)
  mano_joint_img = joint_img + rng.normal(0, 0.15, joint_img.shape)
  joint_cam = rng.normal(0, 0.05, (batch, J, 3))
  joint_cam[:, 0] = 0.0
  mano_joint_cam = joint_cam + rng.normal(0, 0.01, joint_cam.shape)
  mano_joint_cam[:, 0] = 0.0
  mano_pose = rng.normal(0, 0.3, (batch, NUM_POSE))
  mano_shape = rng.normal(0, 1.0, (batch, 10))
  valid_draw = rng.uniform(size=(batch, J))
  joint_valid = np.zeros((batch, J))
  joint_trunc = np.zeros((batch, J))
  mano_joint_valid = np.ones((batch, J))
  mano_joint_trunc = inside(mano_joint_img)
  mano_pose_valid = np.ones((batch, NUM_POSE))
  mano_shape_valid = np.ones(batch)
  is_3D = np.ones(batch)
  for b in range(batch):
    kind = KINDS[b % 4]
    if kind in ('interhand', 'interhand_no_mano'):
      joint_valid[b] = valid_draw[b] < 0.8
      joint_trunc[b] = joint_valid[b] * inside(joint_img[b])
    elif kind == 'freihand':
      joint_img[b] = 0.0
      joint_cam[b] = 0.0
    elif kind == 'mscoco':
      joint_valid[b] = valid_draw[b] < 0.7
      joint_img[b, :, 2] = 0.0
      joint_trunc[b] = joint_valid[b] * inside(joint_img[b])
      joint_cam[b] = 0.0
      is_3D[b] = 0.0
    if kind == 'interhand_no_mano':
      mano_joint_img[b] = 0.0
      mano_joint_cam[b] = 0.0
      mano_pose[b] = 0.0
      mano_shape[b] = 0.0
      mano_joint_valid[b] = 0.0
      mano_joint_trunc[b] = 0.0
      mano_pose_valid[b] = 0.0
      mano_shape_valid[b] = 0.0
  f32 = np.float32
  targets = {'joint_img': joint_img, 'mano_joint_img': mano_joint_img, 'joint_cam': joint_cam,
             'mano_joint_cam': mano_joint_cam, 'mano_pose': mano_pose, 'mano_shape': mano_shape}
  meta_info = {'joint_valid': joint_valid[..., None], 'joint_trunc': joint_trunc[..., None],
               'mano_joint_trunc': mano_joint_trunc[..., None], 'mano_joint_valid': mano_joint_valid[..., None],
               'mano_pose_valid': mano_pose_valid, 'mano_shape_valid': mano_shape_valid, 'is_3D': is_3D}
  return ({k: np.asarray(v, f32) for k, v in targets.items()},
          {k: np.asarray(v, f32) for k, v in meta_info.items()})
