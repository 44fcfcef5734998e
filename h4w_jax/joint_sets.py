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

assert JOINT_IDX.shape == (NUM_JOINTS,)
