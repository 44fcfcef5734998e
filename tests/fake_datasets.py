"""A tiny in-memory reader with images on disk, for pipeline tests (no body models)."""

from pathlib import Path

import cv2
import numpy as np

from h4w_datasets import db as dbm
from h4w_datasets import example as ex

FAKE_JOINTS = ('Pelvis', 'L_Hip', 'R_Hip', 'L_Wrist', 'R_Wrist', 'Nose', 'Head_top')
FAKE_INFO_3D = dbm.DatasetInfo(name='Fake3D', joint_names=FAKE_JOINTS, flip_pairs=((1, 2), (3, 4)),
                               is_3d=True)
FAKE_INFO_2D = dbm.DatasetInfo(name='Fake2D', joint_names=FAKE_JOINTS, flip_pairs=((1, 2), (3, 4)))


class FakeReader:
  """`size` records over images written to `folder` (H=60, W=80, deterministic)."""

  def __init__(self, folder: Path, size: int, info=FAKE_INFO_2D, seed: int = 0):
    self.info = info
    self.folder = Path(folder)
    self.folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    self.records = []
    for i in range(size):
      path = self.folder / f'{info.name}_{i:04d}.png'
      img = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
      cv2.imwrite(str(path), img)
      record = ex.empty_record(info.num_joints)
      record.update(
          img_path=str(path), img_shape=np.array([60, 80], np.int32),
          bbox=np.array([10, 5, 45, 60], np.float32),
          joint_img=np.concatenate([rng.uniform(10, 50, size=(len(FAKE_JOINTS), 2)),
                                    np.zeros((len(FAKE_JOINTS), 1))], 1).astype(np.float32),
          joint_valid=np.ones((len(FAKE_JOINTS), 1), np.float32),
          ann_id=np.int64(i), img_id=np.int64(1000 * seed + i))
      self.records.append(record)

  def __len__(self):
    return len(self.records)

  def __getitem__(self, i):
    return dict(self.records[i])
