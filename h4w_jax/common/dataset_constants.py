"""Fixed facts of the datasets that readers and metrics both use.

numpy only: the input pipeline (h4w_datasets) and the evaluation import them
from here, so neither reaches into the other.
"""

import numpy as np


def _rodrigues(rotvec) -> np.ndarray:
  """Axis-angle (3,) -> rotation matrix (3, 3), float64 (as cv2.Rodrigues)."""
  rotvec = np.asarray(rotvec, np.float64)
  theta = np.linalg.norm(rotvec)
  x, y, z = rotvec / theta
  k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
  return np.eye(3) + np.sin(theta) * k + (1.0 - np.cos(theta)) * (k @ k)


# upstream: EHF.__init__ cam_param['R']. EHF's GT meshes are in a world frame;
# only this camera rotation (no translation) is applied before comparing them
# with the camera-frame prediction.
EHF_CAM_ROTVEC = (-2.98747896, 0.01172457, -0.05704687)
EHF_GT_ROTATION = _rodrigues(EHF_CAM_ROTVEC)   # (3, 3) float64

# upstream: AGORA's original images, (H, W); 4K crops and result files refer to it.
AGORA_IMAGE_SHAPE = (2160, 3840)
