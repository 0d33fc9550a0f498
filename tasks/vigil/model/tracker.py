"""Ultralytics' ByteTrack behind a small adapter, so that only ``vigil.model`` imports ultralytics."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


class TrackerBoxes:
    """The duck-typed detections object Ultralytics' BYTETracker reads (boolean-indexable)."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray):
        self.xyxy, self.conf = xyxy.astype(np.float32), conf.astype(np.float32)
        self.cls = np.zeros(len(conf), np.float32)

    @property
    def xywh(self) -> np.ndarray:
        xy = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
        return np.concatenate([xy, self.xyxy[:, 2:] - self.xyxy[:, :2]], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> "TrackerBoxes":
        return TrackerBoxes(self.xyxy[index], self.conf[index])


def byte_tracker(*, high_thresh: float, low_thresh: float, new_track_thresh: float, buffer_frames: int, match_thresh: float):
    """A fresh ``BYTETracker``; ``update(TrackerBoxes)`` returns rows ending in ``track_id, score, cls, det_index``."""
    from ultralytics.trackers.byte_tracker import BYTETracker

    return BYTETracker(
        SimpleNamespace(
            track_high_thresh=high_thresh,
            track_low_thresh=low_thresh,
            new_track_thresh=new_track_thresh,
            track_buffer=buffer_frames,
            match_thresh=match_thresh,
            fuse_score=True,
        )
    )
