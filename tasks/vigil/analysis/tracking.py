"""People over time: ByteTrack over a recording's detections, in time order.

Tracking runs once per recording, after every shard is done, over the detection rows themselves
(boxes and scores; no pixels are needed). It therefore sees exactly the same sequence whatever the
shard length, and a person crossing a shard boundary keeps one ``track_id`` without any stitching.
The tracker is tuned to the sampling rate, not the source frame rate: lost tracks are kept for
``buffer_s`` seconds of sampled frames. Bins that were not analysed are skipped, not fed as empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from vigil.model.tracker import TrackerBoxes, byte_tracker

TRACKER_VERSION = "bytetrack-1"


@dataclass(frozen=True)
class TrackerSettings:
    high_thresh: float = 0.25  # first-stage association score
    low_thresh: float = 0.1  # second-stage (recovering weak detections)
    new_track_thresh: float = 0.25
    buffer_s: float = 4.0  # how long a lost track may come back, in seconds
    match_thresh: float = 0.8


@dataclass(frozen=True)
class FrameBoxes:
    """One analysed frame: ``xyxy (n, 4)`` and ``confidence (n,)`` in det_index order."""

    frame_index: int
    xyxy: np.ndarray
    confidence: np.ndarray


def assign_tracks(frames: Iterable[FrameBoxes], sample_fps: float, settings: TrackerSettings = TrackerSettings()) -> dict:
    """``{(frame_index, det_index): track_id}`` for every detection the tracker keeps (ids from 1)."""
    tracker = byte_tracker(
        high_thresh=settings.high_thresh,
        low_thresh=settings.low_thresh,
        new_track_thresh=settings.new_track_thresh,
        buffer_frames=max(1, round(settings.buffer_s * sample_fps)),
        match_thresh=settings.match_thresh,
    )
    assigned: dict[tuple[int, int], int] = {}
    seen: list[FrameBoxes] = []
    for frame in frames:
        seen.append(frame)
        output = tracker.update(TrackerBoxes(frame.xyxy.reshape(-1, 4), frame.confidence.reshape(-1)))
        for row in output:
            assigned[(frame.frame_index, int(row[-1]))] = int(row[4])
    _backfill_first_detections(seen, assigned)
    return _renumber(assigned)


def _backfill_first_detections(frames: list[FrameBoxes], assigned: dict) -> None:
    """ByteTrack confirms a new track on its second frame and never reports the first one: give
    that first detection (unassigned, overlapping the track's first box) back to its track."""
    position = {frame.frame_index: i for i, frame in enumerate(frames)}
    first: dict[int, tuple[int, int]] = {}
    for (frame_index, det_index), track_id in sorted(assigned.items()):
        first.setdefault(track_id, (frame_index, det_index))
    for track_id, (frame_index, det_index) in first.items():
        i = position[frame_index]
        if i == 0:
            continue
        previous, box = frames[i - 1], frames[i].xyxy[det_index]
        for candidate in range(len(previous.xyxy)):
            key = (previous.frame_index, candidate)
            if key not in assigned and _iou(previous.xyxy[candidate], box) >= 0.3:
                assigned[key] = track_id
                break


def _renumber(assigned: dict) -> dict:
    """Track ids 1, 2, 3… in order of first appearance (ByteTrack skips ids it never confirmed)."""
    order: dict[int, int] = {}
    for key in sorted(assigned):
        order.setdefault(assigned[key], len(order) + 1)
    return {key: order[track_id] for key, track_id in assigned.items()}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
