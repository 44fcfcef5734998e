"""Results on disk: OBJ meshes, per-person SMPL-X parameters, AMASS-style motion per track.

Per person and picture (or frame), `person_record` holds upstream's parameters (flat, names of
upstream's demo), cam_trans and the virtual camera in original-image pixels (upstream
render_original_img), so that `mesh = SMPL-X(params) + cam_trans` projected with
(focal, princpt) lands on the person in the original picture.

Per video track, `save_amass` writes an AMASS-style npz that the SMPL-X Blender add-on's "Add
Animation" reads (it requires trans, gender, mocap_frame_rate or mocap_framerate, betas, poses;
import it with Format "AMASS"):

    poses (T, 165)   axis-angle, SMPL-X order: root, 21 body, jaw, left eye, right eye,
                     15 left hand, 15 right hand; hands ABSOLUTE (flat hand = 0, as AMASS and the
                     add-on's flat-hand model: upstream's hand mean is added)
    trans (T, 3)     metres, world frame
    betas (10,)      the track's mean shape; num_betas 10
    gender 'neutral', surface_model_type 'smplx', mocap_framerate = mocap_frame_rate (fps),
    mocap_time_length (s)
    root_orient, pose_body, pose_hand, pose_jaw, pose_eye: the same poses split as AMASS's
    SMPL-X release; expression (T, 10)
    frames (T,) video frame indices, observed (T,) bool (False: filled across a gap by slerp /
    linear interpolation so that the motion has one pose per frame)
    focal, princpt (2,) the video camera (pixels), world_from_camera (3, 3)

World frame: AMASS's z-up. Upstream's outputs live in a virtual camera per person and frame
(its focal follows the box size), so the track is first moved into one camera for the whole
video: principal point at the picture's centre, focal = the picture's diagonal in pixels (a
~53 degree field of view, CLIFF's default; the true focal is unknown, so depth is only as right
as that guess), each frame's translation chosen so that the body origin projects where it did
and its scale is kept. Then x stays right, the camera's forward becomes +y and its up +z
(world_from_camera = rotation by -90 degrees about x): the camera sits at the origin, level,
looking along +y. With SMPL-X's rotation about the pelvis rest joint J0, root' = Rw root and
trans' = Rw (J0 + t) - J0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from h4w_jax.common import atomic, draw
from h4w_jax.common import spaces
from h4w_jax.inference import predictor

PARAM_KEYS = tuple(predictor.PARAM_KEYS)   # upstream's demo's names, and cam_trans
# Camera frame (x right, y down, z forward) -> AMASS world (z up, camera looking along +y).
WORLD_FROM_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def save_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
  """A Wavefront OBJ: `v x y z` lines, then 1-based `f a b c` triangles."""
  with atomic.open_for_writing(path, 'w') as f:
    np.savetxt(f, np.asarray(vertices, np.float64), fmt='v %.8g %.8g %.8g')
    np.savetxt(f, np.asarray(faces, np.int64) + 1, fmt='f %d %d %d')


def original_camera(bbox) -> tuple[np.ndarray, np.ndarray]:
  """upstream demo render_original_img: the virtual camera in original pixels.

  The 256x192 body input's camera (focal 5000, princpt (96, 128)) scaled to
  the processed box (bx, by, bw, bh): focal (5000/192 bw, 5000/256 bh),
  princpt (96/192 bw + bx, 128/256 bh + by). Returns (focal (2,), princpt (2,)).
  """
  bx, by, bw, bh = np.asarray(bbox, np.float64)
  body_h, body_w = spaces.INPUT_BODY_SHAPE
  focal = np.array([spaces.FOCAL[0] / body_w * bw, spaces.FOCAL[1] / body_h * bh])
  princpt = np.array([spaces.PRINCPT[0] / body_w * bw + bx, spaces.PRINCPT[1] / body_h * bh + by])
  return focal, princpt


def person_record(params: dict, bbox, image_shape, *, person_id: int, detection) -> dict:
  """One person's parameters (flat float arrays) with the camera and where they came from."""
  record = {k: np.asarray(params[k], np.float32).reshape(-1) for k in PARAM_KEYS}
  focal, princpt = (params['focal'], params['princpt']) if 'focal' in params else \
      original_camera(bbox)
  record.update(focal=np.asarray(focal, np.float64), princpt=np.asarray(princpt, np.float64),
                bbox=np.asarray(bbox, np.float64), image_size=np.array(image_shape[:2]),
                crop_focal=np.array(draw.CROP_FOCAL), crop_princpt=np.array(draw.CROP_PRINCPT),
                person_id=np.array(person_id), detection=np.asarray(detection, np.float64))
  return record


def save_record(stem: Path, record: dict) -> None:
  """stem_smplx.json and stem_smplx.npz, the same numbers."""
  stem.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_text(f'{stem}_smplx.json',
                    json.dumps({k: np.asarray(v).tolist() for k, v in record.items()}) + '\n')
  with atomic.open_for_writing(f'{stem}_smplx.npz') as f:
    np.savez(f, **record)


# ---------------------------------------------------------------------------
# AMASS-style motion per track
# ---------------------------------------------------------------------------

def video_camera(image_shape) -> tuple[np.ndarray, np.ndarray]:
  """(focal (2,), princpt (2,)) of the one camera a video's tracks are put in."""
  height, width = image_shape[:2]
  f = float(np.hypot(height, width))
  return np.array([f, f]), np.array([width / 2.0, height / 2.0])


def to_camera(cam_trans, focal, princpt, new_focal, new_princpt) -> np.ndarray:
  """(N, 3) translations in new cameras: the body origin projects to the same pixel and the
  depth scales with the focal (the scale in the picture is kept)."""
  t = np.asarray(cam_trans, np.float64).reshape(-1, 3)
  f = np.asarray(focal, np.float64).reshape(-1, 2)
  c = np.asarray(princpt, np.float64).reshape(-1, 2)
  nf, nc = np.asarray(new_focal, np.float64), np.asarray(new_princpt, np.float64)
  pixel = f * t[:, :2] / t[:, 2:] + c
  z = t[:, 2] * np.sqrt(nf[0] * nf[1] / (f[:, 0] * f[:, 1]))
  return np.concatenate([(pixel - nc) / nf * z[:, None], z[:, None]], axis=1)


def _fill_gaps(frames: np.ndarray, poses: np.ndarray, values: dict[str, np.ndarray]):
  """Every frame from the first to the last: poses (T, 55, 3) by slerp, vectors linearly."""
  full = np.arange(frames[0], frames[-1] + 1)
  if len(full) == len(frames):
    return full, poses, values, np.ones(len(full), bool)
  out = np.empty((len(full),) + poses.shape[1:])
  for j in range(poses.shape[1]):
    out[:, j] = Slerp(frames, Rotation.from_rotvec(poses[:, j]))(full).as_rotvec()
  filled = {k: np.stack([np.interp(full, frames, v[:, i]) for i in range(v.shape[1])], -1)
            for k, v in values.items()}
  return full, out, filled, np.isin(full, frames)


def amass_motion(frames: Sequence[int], params: Sequence[dict], image_shape, fps: float,
                 layer) -> dict[str, np.ndarray]:
  """One track's AMASS-style arrays (see the module docstring).

  frames: the video frame index of each entry of params (increasing); params: per frame the
  person's parameters with cam_trans and their camera (focal, princpt); layer: upstream's
  SMPL-X layer (its hand mean and its pelvis rest joint).
  """
  import smplx_jax
  frames = np.asarray(frames, np.int64)
  if len(frames) == 0 or np.any(np.diff(frames) <= 0):
    raise ValueError(f'frames must be increasing and non-empty, got {frames.tolist()}')
  stack = {k: np.stack([np.asarray(p[k], np.float64).reshape(-1) for p in params])
           for k in PARAM_KEYS + ('focal', 'princpt')}
  hand_mean = np.asarray(layer.pose_mean, np.float64)[75:]
  n = len(frames)
  poses = np.concatenate([stack['root_pose'], stack['body_pose'], stack['jaw_pose'],
                          np.zeros((n, 6)),
                          np.concatenate([stack['lhand_pose'], stack['rhand_pose']], 1)
                          + hand_mean], axis=1).reshape(n, 55, 3)
  focal, princpt = video_camera(image_shape)
  trans_cam = to_camera(stack['cam_trans'], stack['focal'], stack['princpt'], focal, princpt)
  betas = stack['shape'].mean(axis=0)
  rest = smplx_jax.forward(layer, betas=betas[None].astype(np.float32))
  pelvis = np.asarray(rest.joints, np.float64)[0, 0]
  poses[:, 0] = (Rotation.from_matrix(WORLD_FROM_CAMERA)
                 * Rotation.from_rotvec(poses[:, 0])).as_rotvec()
  trans = (trans_cam + pelvis) @ WORLD_FROM_CAMERA.T - pelvis
  full, poses, values, observed = _fill_gaps(frames, poses,
                                             {'trans': trans, 'expression': stack['expr']})
  poses = poses.reshape(len(full), 165)
  return {
      'poses': poses, 'trans': values['trans'], 'betas': betas, 'num_betas': np.array(len(betas)),
      'gender': np.array('neutral'), 'surface_model_type': np.array('smplx'),
      'mocap_framerate': np.array(float(fps)), 'mocap_frame_rate': np.array(float(fps)),
      'mocap_time_length': np.array(len(full) / float(fps)),
      'root_orient': poses[:, :3], 'pose_body': poses[:, 3:66], 'pose_jaw': poses[:, 66:69],
      'pose_eye': poses[:, 69:75], 'pose_hand': poses[:, 75:],
      'expression': values['expression'], 'frames': full, 'observed': observed,
      'focal': focal, 'princpt': princpt, 'world_from_camera': WORLD_FROM_CAMERA.copy(),
  }


def save_amass(path: Path, motion: dict[str, np.ndarray]) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic.open_for_writing(path) as f:
    np.savez(f, **motion)
  return path
