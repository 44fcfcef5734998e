"""Hand4Whole's SMPL-X joint sets: one source of truth for indices.

upstream: common/utils/human_models.py `SMPLX` (main branch). The supervision
set has 137 joints (25 body, 40 hand, 72 face) picked from the 144 outputs of
the SMPL-X layer with the face contour; its first 65 joints are the
"position" set that the heatmap heads predict. Ranges are (start, stop).
"""

import numpy as np

NUM_JOINTS = 137
NUM_POS_JOINTS = 65

# Supervision joint i is SMPL-X output JOINT_IDX[i] (smplx's 144-joint order).
JOINT_IDX = np.array(
    [0, 1, 2, 4, 5, 7, 8, 12, 16, 17, 18, 19, 20, 21,          # body 0..13
     60, 61, 62, 63, 64, 65,                                   # feet 14..19
     59, 58, 57, 56, 55,                                       # ears, eyes, nose 20..24
     37, 38, 39, 66, 25, 26, 27, 67, 28, 29, 30, 68, 34, 35, 36, 69, 31, 32, 33, 70,  # left hand
     52, 53, 54, 71, 40, 41, 42, 72, 43, 44, 45, 73, 49, 50, 51, 74, 46, 47, 48, 75,  # right hand
     22, 15, 57, 56]                                           # jaw, head, eyes (Face_1..4)
    + list(range(76, 144)),                                    # Face_5..72: landmarks
    dtype=np.int32)

ROOT_IDX, LWRIST_IDX, RWRIST_IDX, NECK_IDX = 0, 12, 13, 7

JOINT_PART = {'body': (0, 25), 'lhand': (25, 45), 'rhand': (45, 65), 'hand': (25, 65),
              'face': (65, 137)}
POS_JOINT_PART = {'body': (0, 25), 'lhand': (25, 45), 'rhand': (45, 65), 'hand': (25, 65)}

# Index_1, Middle_1, Ring_1 and Pinky_1 within a 20-joint hand (pos_joint_part 'L_MCP').
MCP_IDX = (4, 8, 12, 16)

# The 53 "orig" SMPL-X joints: 22 body (root first), 15 per hand, the jaw.
ORIG_JOINT_PART = {'body': (0, 22), 'lhand': (22, 37), 'rhand': (37, 52), 'face': (52, 53)}
NUM_BODY_POSE_JOINTS = 21   # body joints without the root
NUM_HAND_POSE_JOINTS = 15

SHAPE_PARAM_DIM = 10
EXPR_CODE_DIM = 10

_HAND_NAMES = tuple(f'{finger}_{i}' for finger in ('Thumb', 'Index', 'Middle', 'Ring', 'Pinky')
                    for i in range(1, 5))

# Names of the 137 supervision joints; datasets map their own joints onto these by name.
JOINT_NAMES = (
    ('Pelvis', 'L_Hip', 'R_Hip', 'L_Knee', 'R_Knee', 'L_Ankle', 'R_Ankle', 'Neck', 'L_Shoulder',
     'R_Shoulder', 'L_Elbow', 'R_Elbow', 'L_Wrist', 'R_Wrist', 'L_Big_toe', 'L_Small_toe', 'L_Heel',
     'R_Big_toe', 'R_Small_toe', 'R_Heel', 'L_Ear', 'R_Ear', 'L_Eye', 'R_Eye', 'Nose')
    + tuple('L_' + n for n in _HAND_NAMES) + tuple('R_' + n for n in _HAND_NAMES)
    + tuple(f'Face_{i}' for i in range(1, 73)))

# Mirror pairs within the 137 set (upstream `smpl_x.flip_pairs`).
FLIP_PAIRS = (
    ((1, 2), (3, 4), (5, 6), (8, 9), (10, 11), (12, 13), (14, 17), (15, 18), (16, 19), (20, 21),
     (22, 23))
    + tuple((25 + i, 45 + i) for i in range(20))
    + ((67, 68), (69, 78), (70, 77), (71, 76), (72, 75), (73, 74), (83, 87), (84, 86),
       (88, 97), (89, 96), (90, 95), (91, 94), (92, 99), (93, 98),
       (100, 106), (101, 105), (102, 104), (107, 111), (108, 110), (112, 116), (113, 115),
       (117, 119))
    + tuple((120 + k, 136 - k) for k in range(8)))

_ORIG_HAND_NAMES = tuple(f'{finger}_{i}' for finger in ('Index', 'Middle', 'Pinky', 'Ring', 'Thumb')
                         for i in range(1, 4))

# The 53 pose-parameter joints, in pose-vector order.
ORIG_JOINT_NAMES = (
    ('Pelvis', 'L_Hip', 'R_Hip', 'Spine_1', 'L_Knee', 'R_Knee', 'Spine_2', 'L_Ankle', 'R_Ankle',
     'Spine_3', 'L_Foot', 'R_Foot', 'Neck', 'L_Collar', 'R_Collar', 'Head', 'L_Shoulder',
     'R_Shoulder', 'L_Elbow', 'R_Elbow', 'L_Wrist', 'R_Wrist')
    + tuple('L_' + n for n in _ORIG_HAND_NAMES) + tuple('R_' + n for n in _ORIG_HAND_NAMES)
    + ('Jaw',))
NUM_ORIG_JOINTS = 53

# Mirror pairs within the 53 pose joints (upstream `smpl_x.orig_flip_pairs`).
ORIG_FLIP_PAIRS = (((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21))
                   + tuple((22 + i, 37 + i) for i in range(15)))


def flip_permutation(num_joints: int, pairs) -> np.ndarray:
  """Index array `perm` with x[perm] swapping every pair (a flip as one gather)."""
  perm = np.arange(num_joints)
  for a, b in pairs:
    perm[a], perm[b] = b, a
  return perm


FLIP_PERM = flip_permutation(NUM_JOINTS, FLIP_PAIRS)
ORIG_FLIP_PERM = flip_permutation(NUM_ORIG_JOINTS, ORIG_FLIP_PAIRS)

# ---------------------------------------------------------------------------
# MANO (the hand-only model of stage 2; upstream: Pose2Pose human_models.py MANO)

# The 16 pose joints of the MANO file, in pose-vector order (root first).
MANO_ORIG_JOINT_NAMES = ('Wrist',) + tuple(f'{finger}_{i}' for finger in (
    'Index', 'Middle', 'Pinky', 'Ring', 'Thumb') for i in range(1, 4))
NUM_MANO_ORIG_JOINTS = 16
# The 21 supervised hand joints (FreiHAND's and COCO-WholeBody's keypoint order): the 16
# skeleton joints by name plus one fingertip vertex per finger (the _4 joints).
MANO_JOINT_NAMES = ('Wrist',) + _HAND_NAMES
NUM_MANO_JOINTS = 21
MANO_ROOT_IDX = 0
MANO_FINGERTIP_VERTICES = {'Thumb_4': 745, 'Index_4': 317, 'Middle_4': 445, 'Ring_4': 556,
                           'Pinky_4': 673}
MANO_SKELETON = tuple((0, 1 + 4 * f) for f in range(5)) + tuple(
    (1 + 4 * f + k, 2 + 4 * f + k) for f in range(5) for k in range(3))

assert JOINT_IDX.shape == (NUM_JOINTS,)
assert len(JOINT_NAMES) == NUM_JOINTS and len(ORIG_JOINT_NAMES) == NUM_ORIG_JOINTS
assert len(MANO_ORIG_JOINT_NAMES) == NUM_MANO_ORIG_JOINTS and len(MANO_JOINT_NAMES) == NUM_MANO_JOINTS
