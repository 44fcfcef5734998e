"""Deterministic fake Hand4Whole weights, images and training targets.

Built identically (numpy only) by the throwaway harness that ran upstream's
own PyTorch model to make tests/data/h4w_goldens*.npz, and by our JAX parity
tests. Random numbers come from `np.random.RandomState`, whose streams numpy
keeps frozen across versions (the legacy-stream policy), so the fakes do not
change with the numpy release. Every array is a pure function of its name and
the seed; tests/data/README.md says how the goldens were made from them.

Layouts are upstream's: state-dict tensors are torch-shaped (OIHW convs,
(out, in) linears, (in, out, kh, kw) transposed convs) with the `module.`
prefix; images are channels-last (B, 512, 384, 3) as the JAX model takes them
(the harness transposed them to NCHW).
"""

import json
import math
import re
import zlib
from pathlib import Path

import numpy as np

MANIFEST_PATH = Path(__file__).parent / 'data' / 'state_dict_manifest.json'

IMG_H, IMG_W = 512, 384
BODY_HM = (8, 8, 6)  # (D, H, W) body heatmap; 1 unit = 32 px of the 192x256 body image
HAND_HM = (8, 8, 8)  # (D, H, W) hand heatmap
NUM_JOINTS = 137
NUM_POSE = 159

# Joint blocks of the 137-joint supervision set (upstream smpl_x.joint_part).
BODY = (0, 25)
LHAND = (25, 45)
RHAND = (45, 65)
FACE = (65, 137)

# Head settings. A "gain" g gives a weight std of g / sqrt(fan_in * ms), where
# ms is the mean square of that layer's input (INPUT_MS), so the outputs
# spread by about g. Tuned by running upstream's model on the seed-0 fakes.
POSITION_GAIN = 8.0        # heatmap logits: a direction per joint, shared by its depth channels
POSITION_DEPTH_GAIN = 1.0  # plus a direction per (joint, depth) channel
POSITION_BIAS_STD = 0.5    # plus per-(joint, depth) biases: these spread the soft-argmax z
POSE6D_GAIN = 0.3          # 6D pose outputs: identity + about 0.3 noise
SHAPE_GAIN = 0.5           # betas: about 0.5
EXPR_GAIN = 0.5            # expression: about 0.5
CAM_XY_GAIN = 0.05         # camera x/y translation: a few cm
CAM_Z_BIAS = 0.8           # t_z = 56.38 * sigmoid(0.8 + ...) = about 41 m
CAM_Z_GAIN = 0.2
CENTER_GAIN = 10.0         # BoxNet centre logits over the 64x48 map: peaked, not one-hot
SIZE_GAIN = 0.15           # BoxNet size outputs: bias + about 0.15-0.2 body-hm units
# (w, h) size biases in body-hm units (1 unit = 32 px of the 192x256 body
# image). restore_bbox squares the box on its longer side and extends it by
# 2.0 (hands) or 1.5 (face). Test mode, fake_images(2): left-hand boxes of
# 84-92 px, right-hand boxes of 133-139 px (above 128 px, i.e. above 256 px in
# the 512x384 crop, so roi_align takes 2x2 samples per bin there, 1 sample for
# the other boxes) and face boxes of 78-86 px.
SIZE_BIAS = {'lhand': (1.1, 1.2), 'rhand': (2.1, 1.9), 'face': (1.5, 1.7)}

# Mean squares of the heads' inputs, as measured (rounded) on the seed-0 fakes
# in test mode while tuning. Fixed constants: changing them changes the weights.
INPUT_MS = {
    'body_feat': 0.82,       # body backbone output (B, 2048, 8, 6)
    'body_gap': 0.80,        # its global average (shape / camera heads)
    'hand_feat': 0.68,       # hand backbone output (2B, 2048, 8, 8)
    'face_gap': 0.38,        # global average of the face backbone output (B, 512)
    'rot_feat': 0.91,        # body RotationNet input: 33 joints x (512 sampled + 3 coords)
    'hand_rot_feat': 0.97,   # hand RotationNet input: 20 joints x (512 sampled + 3 coords)
    'box_feat': 0.70,        # BoxNet deconv output (B, 256, 64, 48)
    'size_hidden': 0.85,     # BoxNet size MLP hidden layer (after ReLU)
}


def load_manifest(path=MANIFEST_PATH):
  """The upstream state-dict manifest: key -> {'shape': [...], 'dtype': str}."""
  with open(path) as f:
    return json.load(f)


def _rng(key, seed):
  """A RandomState seeded from the seed and a stable hash (CRC-32) of the key."""
  return np.random.RandomState([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode('utf-8'))])


def _normal(key, seed, shape, std, mean=0.0):
  rng = _rng(key, seed)
  return (mean + std * rng.standard_normal(size=tuple(shape))).astype(np.float32)


def _fan_in(name, shape):
  if len(shape) == 4 and '.deconv.' in name:
    # ConvTranspose2d (in, out, 4, 4), stride 2: each output pixel sums in * 2 * 2 taps
    return shape[0] * (shape[2] // 2) * (shape[3] // 2)
  return int(np.prod(shape[1:]))


def _closing_bn(name, manifest):
  """True for the BatchNorm that closes a residual branch (Bottleneck bn3, BasicBlock bn2)."""
  m = re.search(r'^(.*layer\d+\.\d+)\.bn(\d)\.', name)
  if m is None:
    return False
  block, idx = m.group(1), int(m.group(2))
  has_bn3 = f'{block}.bn3.weight' in manifest
  return idx == 3 or (idx == 2 and not has_bn3)


def _head_value(name, shape, seed):
  """The value of a head parameter, or None for the generic rules."""
  n = name.removeprefix('module.')
  fan = _fan_in(n, shape)

  def lin(gain, ms):
    return _normal(name, seed, shape, gain / math.sqrt(fan * ms))

  identity6 = np.array([1, 0, 0, 1, 0, 0], np.float32)
  if n in ('body_position_net.conv.0.weight', 'hand_position_net.conv.0.weight'):
    # channel j * D + d: a direction per joint, shared by its D depth channels,
    # plus a smaller one per channel
    depth = BODY_HM[0] if n.startswith('body') else HAND_HM[0]
    std = 1.0 / math.sqrt(fan * INPUT_MS['body_feat' if n.startswith('body') else 'hand_feat'])
    noise = _rng(name, seed).standard_normal(size=(shape[0] // depth, depth + 1) + shape[1:])
    w = POSITION_GAIN * noise[:, :1] + POSITION_DEPTH_GAIN * noise[:, 1:]
    return (std * w).reshape(shape).astype(np.float32)
  if n in ('body_position_net.conv.0.bias', 'hand_position_net.conv.0.bias'):
    return _normal(name, seed, shape, POSITION_BIAS_STD)
  if n in ('body_rotation_net.root_pose_out.0.weight', 'body_rotation_net.body_pose_out.0.weight'):
    return lin(POSE6D_GAIN, INPUT_MS['rot_feat'])
  if n == 'hand_rotation_net.hand_pose_out.0.weight':
    return lin(POSE6D_GAIN, INPUT_MS['hand_rot_feat'])
  if n in ('body_rotation_net.root_pose_out.0.bias', 'body_rotation_net.body_pose_out.0.bias',
           'hand_rotation_net.hand_pose_out.0.bias', 'face_regressor.jaw_pose_out.0.bias'):
    return np.tile(identity6, shape[0] // 6) + _normal(name, seed, shape, 0.05)
  if n == 'face_regressor.jaw_pose_out.0.weight':
    return lin(POSE6D_GAIN, INPUT_MS['face_gap'])
  if n == 'face_regressor.expr_out.0.weight':
    return lin(EXPR_GAIN, INPUT_MS['face_gap'])
  if n == 'body_rotation_net.shape_out.0.weight':
    return lin(SHAPE_GAIN, INPUT_MS['body_gap'])
  if n == 'body_rotation_net.cam_out.0.weight':
    w = lin(1.0, INPUT_MS['body_gap'])
    return w * np.array([CAM_XY_GAIN, CAM_XY_GAIN, CAM_Z_GAIN], np.float32)[:, None]
  if n == 'body_rotation_net.cam_out.0.bias':
    return np.array([0.0, 0.0, CAM_Z_BIAS], np.float32) + _normal(name, seed, shape, 0.01)
  if n in ('face_regressor.expr_out.0.bias', 'body_rotation_net.shape_out.0.bias'):
    return _normal(name, seed, shape, 0.1)
  if n == 'box_net.bbox_center.0.weight':
    return lin(CENTER_GAIN, INPUT_MS['box_feat'])
  if n == 'box_net.bbox_center.0.bias':
    return _normal(name, seed, shape, 0.1)
  m = re.fullmatch(r'box_net\.(lhand|rhand|face)_size\.(0|2)\.(weight|bias)', n)
  if m:
    part, layer, kind = m.groups()
    if layer == '0':
      if kind == 'weight':
        return lin(math.sqrt(2.0), INPUT_MS['box_feat'])  # He-normal
      return _normal(name, seed, shape, 0.05)
    if kind == 'weight':
      return lin(SIZE_GAIN, INPUT_MS['size_hidden'])
    return np.array(SIZE_BIAS[part], np.float32) + _normal(name, seed, shape, 0.02)
  return None


def fake_state_dict(manifest, seed=0):
  """A full fake upstream state dict (all keys, `module.` prefix) as numpy arrays.

  manifest: key -> {'shape', 'dtype'} (load_manifest()). Every tensor is drawn
  from its own RandomState seeded by (seed, CRC-32 of the key), so the result
  does not depend on key order. Values are float32 (int64 for
  num_batches_tracked). The choices:

  * Backbones (body R-50, hand R-50, face R-18) and the head convs / linears
    without a rule below: He-normal weights, std sqrt(2 / fan_in), fan_in =
    in * kh * kw (for BoxNet's stride-2 k4 transposed convs in * 2 * 2, the
    taps one output pixel sums). Their biases: N(0, 0.05).
  * BatchNorm: weight 1 + N(0, 0.1), except the BN closing each residual
    branch (Bottleneck bn3, BasicBlock bn2), scaled by 0.2 so each block adds
    a fraction of its input's variance and the features stay O(1) (the
    backbone outputs have a mean square of 0.4-0.8); bias N(0, 0.05);
    running_mean N(0, 0.05); running_var exp(N(0, 0.1)), always positive;
    num_batches_tracked 0. In test mode the running statistics are used; they
    do not match the activations' statistics, so train mode (batch
    statistics) gives different features and boxes.
  * Position nets (body 25 joints x 8 depths, hand 20 x 8; channel j * 8 + d):
    weight = (POSITION_GAIN * u_j + POSITION_DEPTH_GAIN * v_jd) / sqrt(fan_in
    * ms) with u, v standard normal, bias N(0, POSITION_BIAS_STD). The
    direction shared by a joint's depth channels moves its x/y; the smaller
    per-channel parts and biases spread z without making it one-hot. Seed 0,
    test mode: the largest voxel probability is 0.15 on average (0.37 at most)
    over 384 body voxels; the soft-argmax body x/y/z spread by about
    1.0/1.5/1.0 units inside the 6x8x8 heatmap, the hand ones by 1.3/1.4/1.1
    inside 8x8x8.
  * 6D pose heads (root, 21 body joints, 15 hand joints, jaw): bias
    [1, 0, 0, 1, 0, 0] per joint (the identity in upstream's interleaved 6D
    layout) + N(0, 0.05), weights adding about POSE6D_GAIN: rotations of
    0.03-0.9 rad, never exactly the identity (whose gradient is NaN upstream).
  * shape / expression: about SHAPE_GAIN / EXPR_GAIN, biases N(0, 0.1).
  * Camera: x/y weights with gain CAM_XY_GAIN (bias ~0), z logit bias
    CAM_Z_BIAS with gain CAM_Z_GAIN: t_z = 56.38 * sigmoid(.) is about 41 m,
    where the ~1.7 m synthetic SMPL-X body spans most of the 256 rows of the
    body image (the virtual focal length is 5000 px).
  * BoxNet centre conv (3 x 256): gain CENTER_GAIN (bias N(0, 0.1)), so the
    soft-argmax centres over the 64x48 map are distinct, away from the map
    centre, and inside the image.
  * BoxNet size MLPs: hidden layer with gain sqrt(2) (He-normal relative to
    its input's mean square), bias N(0, 0.05); the output
    weights have gain SIZE_GAIN and the output bias is SIZE_BIAS (w, h) +
    N(0, 0.02) in body-hm units: positive sizes, boxes of 40-150 px (see
    SIZE_BIAS).
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
      value = _normal(name, seed, shape, math.sqrt(2.0 / _fan_in(name, shape)))
    else:
      value = _normal(name, seed, shape, 0.05)
    value = np.asarray(value, dtype=np.dtype(info['dtype']))
    assert value.shape == shape, (name, value.shape, shape)
    out[name] = value
  return out


def fake_images(batch, seed=0):
  """(B, 512, 384, 3) float32 in [0, 1], channels-last: smooth patterns.

  Each image channel is a sum of 4 plane waves (periods of 60 px and longer)
  and 3 Gaussian blobs (sigma 15 to 60 px), then min-max scaled
  to [0.05, 0.95]. Features vary over the whole image, so heatmaps, boxes and
  crops differ between samples.
  """
  rng = np.random.RandomState([int(seed) & 0xFFFFFFFF, 0x1A4E])
  y = np.arange(IMG_H, dtype=np.float64)[:, None]
  x = np.arange(IMG_W, dtype=np.float64)[None, :]
  imgs = np.zeros((batch, IMG_H, IMG_W, 3), np.float64)
  for b in range(batch):
    for c in range(3):
      v = np.zeros((IMG_H, IMG_W))
      for _ in range(4):
        fy, fx = rng.uniform(-1.0, 1.0, size=2) * (2 * math.pi / 60.0)
        fy, fx = fy * rng.uniform(0.15, 1.0), fx * rng.uniform(0.15, 1.0)
        phase = rng.uniform(0, 2 * math.pi)
        v += rng.uniform(0.3, 1.0) * np.sin(fy * y + fx * x + phase)
      for _ in range(3):
        cy, cx = rng.uniform(0, IMG_H), rng.uniform(0, IMG_W)
        sigma = rng.uniform(15.0, 60.0)
        v += rng.uniform(-2.0, 2.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma ** 2))
      v = (v - v.min()) / max(v.max() - v.min(), 1e-12)
      imgs[b, :, :, c] = 0.05 + 0.9 * v
  return imgs.astype(np.float32)


# Where the hand / face joints of fake_targets are clustered, for even and odd
# samples (body-hm units, x in [0, 6), y in [0, 8)): at the box centres the
# seed-0 fake network predicts for fake_images(2) in train mode (BatchNorm on
# batch statistics moves them to the upper left), so that some hand joints
# fall inside the predicted hand boxes and some outside. The face joints are
# aligned by translation only, so their cluster need not match its box.
TARGET_CENTERS = {'lhand': ((1.35, 1.0), (1.2, 1.55)),
                  'rhand': ((2.3, 0.85), (1.0, 1.85)),
                  'face': ((2.5, 1.5), (2.5, 1.5))}
TARGET_SPREAD = {'lhand': 2.0, 'rhand': 3.0, 'face': 1.0}


def _centers(part, batch):
  """(B, 2) cluster centres: TARGET_CENTERS[part] for even / odd samples."""
  return np.asarray([TARGET_CENTERS[part][b % 2] for b in range(batch)], np.float64)


def fake_targets(batch, seed=0):
  """Train-mode (targets, meta_info) with upstream's keys and shapes, all float32.

  targets:
    joint_img, smplx_joint_img (B, 137, 3): body-hm units, x in [0, 6), y in
      [0, 8), z in [0, 8). Body joints spread over the image (a few outside);
      hand and face joints uniform within TARGET_SPREAD of TARGET_CENTERS
      (some fall outside the image: their trunc is 0).
      smplx_joint_img = joint_img + N(0, 0.1).
    joint_cam, smplx_joint_cam (B, 137, 3): metres, root-relative, the hands
      relative to their wrists and the face to the neck (as upstream's
      get_coord re-roots): N(0, 0.3) body, N(0, 0.05) hands, N(0, 0.06) face.
    smplx_pose (B, 159) N(0, 0.3); smplx_shape (B, 10) N(0, 1);
    smplx_expr (B, 10) N(0, 0.5).
    {lhand,rhand,face}_bbox_center (B, 2) = TARGET_CENTERS + N(0, 0.2),
    {..}_bbox_size (B, 2) in [1, 2.5] (body-hm units).
  meta_info:
    joint_valid, smplx_joint_valid (B, 137, 1): 1 with probability 0.8;
    joint_trunc (B, 137, 1): joint_valid, 0 for a further 10% and for joints
      outside the 6x8 image; smplx_joint_trunc: smplx_joint_valid, 0 outside
      the image;
    smplx_pose_valid (B, 159): per orig joint (53), repeated x3;
    smplx_shape_valid, smplx_expr_valid, is_3D, {lhand,rhand,face}_bbox_valid
      (B,): fixed alternating patterns so that a batch of 2 has both values.
  Odd samples have NO valid left-hand joint and NO valid face joint
  (joint_trunc and smplx_joint_trunc 0 there): upstream's translation
  alignment then takes its zero-offset branch (a plain masked mean would be
  NaN there, and NaN * 0 stays NaN in the loss). With the seed-0 fakes in
  train mode, 4 of sample 0's 8 truncation-valid left-hand joints lie inside
  its predicted box, and 8 of 9 / 7 of 8 right-hand ones.
  Upstream's default_collate would make the scalar flags float64; these are
  float32 throughout (the harness fed them as float32 tensors).
  """
  rng = np.random.RandomState([int(seed) & 0xFFFFFFFF, 0x7A26])
  f32 = np.float32
  d, h, w = BODY_HM
  joint_img = np.zeros((batch, NUM_JOINTS, 3))
  joint_img[:, BODY[0]:BODY[1], 0] = rng.uniform(-0.5, w + 0.5, (batch, BODY[1] - BODY[0]))
  joint_img[:, BODY[0]:BODY[1], 1] = rng.uniform(-0.5, h + 0.5, (batch, BODY[1] - BODY[0]))
  for part, (s, e) in (('lhand', LHAND), ('rhand', RHAND), ('face', FACE)):
    center = _centers(part, batch)
    r = TARGET_SPREAD[part]
    joint_img[:, s:e, 0] = center[:, 0:1] + rng.uniform(-r, r, (batch, e - s))
    joint_img[:, s:e, 1] = center[:, 1:2] + rng.uniform(-r, r, (batch, e - s))
  joint_img[:, :, 2] = rng.uniform(0, d, (batch, NUM_JOINTS))
  smplx_joint_img = joint_img + rng.normal(0, 0.1, joint_img.shape)

  joint_cam = np.concatenate([
      rng.normal(0, 0.3, (batch, BODY[1], 3)),
      rng.normal(0, 0.05, (batch, RHAND[1] - LHAND[0], 3)),
      rng.normal(0, 0.06, (batch, FACE[1] - FACE[0], 3))], axis=1)
  joint_cam[:, 0] = 0.0
  smplx_joint_cam = joint_cam + rng.normal(0, 0.02, joint_cam.shape)

  def inside(img):
    return ((img[..., 0] >= 0) & (img[..., 0] < w) & (img[..., 1] >= 0) & (img[..., 1] < h))

  joint_valid = (rng.uniform(size=(batch, NUM_JOINTS)) < 0.8).astype(f32)
  joint_trunc = joint_valid * (rng.uniform(size=(batch, NUM_JOINTS)) < 0.9) * inside(joint_img)
  smplx_joint_valid = (rng.uniform(size=(batch, NUM_JOINTS)) < 0.8).astype(f32)
  smplx_joint_trunc = smplx_joint_valid * inside(smplx_joint_img)
  for b in range(1, batch, 2):  # odd samples: no valid left-hand or face joint
    for s, e in (LHAND, FACE):
      joint_trunc[b, s:e] = 0
      smplx_joint_trunc[b, s:e] = 0
  pose_valid = (rng.uniform(size=(batch, 53)) < 0.8).astype(f32)
  alternating = np.arange(batch) % 2
  meta_info = {
      'joint_valid': joint_valid[..., None],
      'joint_trunc': joint_trunc[..., None],
      'smplx_joint_valid': smplx_joint_valid[..., None],
      'smplx_joint_trunc': smplx_joint_trunc[..., None],
      'smplx_pose_valid': np.repeat(pose_valid, 3, axis=1),
      'smplx_shape_valid': 1.0 - alternating,
      'smplx_expr_valid': alternating,
      'is_3D': 1.0 - alternating,
      'lhand_bbox_valid': 1.0 - alternating,
      'rhand_bbox_valid': np.ones(batch),
      'face_bbox_valid': alternating,
  }
  targets = {
      'joint_img': joint_img,
      'smplx_joint_img': smplx_joint_img,
      'joint_cam': joint_cam,
      'smplx_joint_cam': smplx_joint_cam,
      'smplx_pose': rng.normal(0, 0.3, (batch, NUM_POSE)),
      'smplx_shape': rng.normal(0, 1.0, (batch, 10)),
      'smplx_expr': rng.normal(0, 0.5, (batch, 10)),
  }
  for part in ('lhand', 'rhand', 'face'):
    targets[f'{part}_bbox_center'] = _centers(part, batch) + rng.normal(0, 0.2, (batch, 2))
    targets[f'{part}_bbox_size'] = rng.uniform(1.0, 2.5, (batch, 2))
  targets = {k: np.asarray(v, f32) for k, v in targets.items()}
  meta_info = {k: np.asarray(v, f32) for k, v in meta_info.items()}
  return targets, meta_info
