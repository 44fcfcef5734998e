"""Hand4Whole's image, heatmap and camera spaces: upstream's `main/config.py` values.

The one source of truth for these constants; the input pipeline, the networks,
the metrics and the pictures import them from here. numpy-free, jax-free.
"""

import math

# upstream: main/config.py. Shapes are (H, W) or (D, H, W), as upstream.
INPUT_IMG_SHAPE = (512, 384)       # network input crop; the roi_align source image
INPUT_BODY_SHAPE = (256, 192)      # body backbone input; bbox coordinate space
OUTPUT_HM_SHAPE = (8, 8, 6)        # body 3D heatmap (D, H, W): "body-hm units"
INPUT_HAND_SHAPE = (256, 256)      # roi_align output for hands
OUTPUT_HAND_HM_SHAPE = (8, 8, 8)   # hand 3D heatmap (D, H, W)
INPUT_FACE_SHAPE = (192, 192)      # roi_align output for the face
FOCAL = (5000.0, 5000.0)           # virtual focal length, input_body pixels
PRINCPT = (INPUT_BODY_SHAPE[1] / 2, INPUT_BODY_SHAPE[0] / 2)   # (96.0, 128.0)
CAMERA_3D_SIZE = 2.5

# upstream: main/model.py get_camera_trans k_value. It is evaluated in float64
# and then stored as float32 (torch.FloatTensor), about 56.381863.
CAMERA_K = math.sqrt(FOCAL[0] * FOCAL[1] * CAMERA_3D_SIZE * CAMERA_3D_SIZE
                     / (INPUT_BODY_SHAPE[0] * INPUT_BODY_SHAPE[1]))

# The hand-only model of stage 2 (upstream's Pose2Pose branch, `cfg.parts == 'hand'`): a
# 256x256 hand crop, an 8x8x8 heatmap and its own virtual camera (focal 5000 px at the
# crop's centre, depth range camera_3d_size 0.4 m): k = 5000 * 0.4 / 256 = 7.8125 exactly.
HAND_INPUT_SHAPE = INPUT_HAND_SHAPE                 # (256, 256)
HAND_HM_SHAPE = OUTPUT_HAND_HM_SHAPE                # (8, 8, 8)
HAND_FOCAL = FOCAL
HAND_PRINCPT = (HAND_INPUT_SHAPE[1] / 2, HAND_INPUT_SHAPE[0] / 2)   # (128.0, 128.0)
HAND_CAMERA_3D_SIZE = 0.4
HAND_CAMERA_K = math.sqrt(HAND_FOCAL[0] * HAND_FOCAL[1] * HAND_CAMERA_3D_SIZE
                          * HAND_CAMERA_3D_SIZE / (HAND_INPUT_SHAPE[0] * HAND_INPUT_SHAPE[1]))
# bbox_3d_size: wrist-relative depth in [-0.15, 0.15] m spans the heatmap's 8 depth bins.
HAND_3D_SIZE = 0.3
