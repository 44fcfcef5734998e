"""People across video frames: box association with ids kept through short gaps.

Each live track predicts its box at the new frame from its last box and velocity (constant
velocity, in pixels per frame); detections are matched to tracks by the Hungarian algorithm on
1 - IoU, a match needing IoU >= iou_threshold. A detection left over starts a new track (ids
count up from 0, never reused); a track not matched for more than max_gap frames ends. So a
person hidden for a few frames (crossing behind someone, a missed detection) keeps their id.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment

from h4w_jax.inference import boxes as box_ops


@dataclasses.dataclass
class Track:
  id: int
  box: np.ndarray            # (4,) xywh, the last matched detection
  velocity: np.ndarray       # (4,) per frame
  last_frame: int
  frames: int = 1            # how many frames it was matched in

  def predict(self, frame: int) -> np.ndarray:
    return self.box + self.velocity * (frame - self.last_frame)


class Tracker:
  """`tracker.update(frame, detections (N, 5)) -> ids (N,)`, frames increasing."""

  def __init__(self, iou_threshold: float = 0.3, max_gap: int = 15):
    if max_gap < 0:
      raise ValueError(f'max_gap must be >= 0, got {max_gap}')
    self.iou_threshold, self.max_gap = iou_threshold, max_gap
    self.tracks: list[Track] = []
    self.next_id = 0

  def update(self, frame: int, detections: np.ndarray) -> np.ndarray:
    dets = np.asarray(detections, np.float64).reshape(-1, np.shape(detections)[-1]
                                                      if np.size(detections) else 5)[:, :4]
    self.tracks = [t for t in self.tracks if frame - t.last_frame <= self.max_gap + 1]
    ids = np.full(len(dets), -1, np.int64)
    if self.tracks and len(dets):
      predicted = np.stack([t.predict(frame) for t in self.tracks])
      overlap = box_ops.iou(predicted, dets)
      rows, cols = linear_sum_assignment(1.0 - overlap)
      for r, c in zip(rows, cols):
        if overlap[r, c] >= self.iou_threshold:
          track = self.tracks[r]
          step = (dets[c] - track.box) / (frame - track.last_frame)
          track.velocity = step if track.frames == 1 else 0.5 * (track.velocity + step)
          track.box, track.last_frame = dets[c].copy(), frame
          track.frames += 1
          ids[c] = track.id
    for c in np.flatnonzero(ids < 0):
      self.tracks.append(Track(self.next_id, dets[c].copy(), np.zeros(4), frame))
      ids[c] = self.next_id
      self.next_id += 1
    return ids
