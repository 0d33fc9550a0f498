"""What investigators read, derived per recording from its finished shards: track_points, tracks,
presence intervals and posture events.

Pure functions from the recording's ``detections`` and ``frames`` rows (Arrow tables) to the
derived tables; publishing them is the caller's job (finalize.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from vigil.analysis import postures
from vigil.store.schema import POSE_EVENTS, PRESENCE, SCHEMAS, STATUS_OK, STATUS_STATIC, TRACK_POINTS, TRACKS
from vigil.analysis.tracking import TRACKER_VERSION, FrameBoxes, TrackerSettings, assign_tracks

DERIVED_VERSION = f"{TRACKER_VERSION}+{postures.RULES_VERSION}+presence-1"
BEST_VIEW_MIN_CONF = 0.5
PRESENCE_MAX_GAP_S = 2.0


def derive(
    recording_id: str,
    detections: pa.Table,
    frames: pa.Table,
    sample_fps: float,
    recording_start: datetime | None = None,
    max_gap_s: float = PRESENCE_MAX_GAP_S,
) -> dict[str, pa.Table]:
    """All derived tables of one recording."""
    detections = detections.sort_by([("pts_s", "ascending"), ("det_index", "ascending")])
    frames = frames.sort_by([("pts_s", "ascending")])
    det = detections.to_pydict()
    boxes = np.stack([det["x1"], det["y1"], det["x2"], det["y2"]], axis=1) if det["x1"] else np.zeros((0, 4))
    keypoints = (
        np.stack([np.array(det["kp_x"]), np.array(det["kp_y"]), np.array(det["kp_conf"])], axis=2)
        if det["kp_x"]
        else np.zeros((0, 17, 3))
    )
    rows_by_frame: dict[int, list[int]] = {}
    for row, frame_index in enumerate(det["frame_index"]):
        rows_by_frame.setdefault(frame_index, []).append(row)

    analysed = [(fi, pts) for fi, pts, status in zip(*(frames[c].to_pylist() for c in ("frame_index", "pts_s", "status")))
                if status == STATUS_OK]  # fmt: skip
    sequence = (
        FrameBoxes(fi, boxes[rows_by_frame.get(fi, [])], np.array(det["confidence"])[rows_by_frame.get(fi, [])])
        for fi, _ in analysed
    )
    assigned = assign_tracks(sequence, sample_fps, TrackerSettings())
    track_of_row = [assigned.get((fi, di)) for fi, di in zip(det["frame_index"], det["det_index"])]

    def wall(seconds: float):
        return recording_start + timedelta(seconds=seconds) if recording_start else None

    tables = {
        TRACK_POINTS: _table(TRACK_POINTS, [
            {"recording_id": recording_id, "frame_index": fi, "det_index": di, "pts_s": pts, "track_id": tid}
            for fi, di, pts, tid in zip(det["frame_index"], det["det_index"], det["pts_s"], track_of_row)
            if tid is not None
        ]),  # fmt: skip
        TRACKS: _table(TRACKS, _tracks(recording_id, det, boxes, track_of_row, wall)),
        PRESENCE: _table(PRESENCE, _presence(recording_id, frames, det, track_of_row, sample_fps, max_gap_s, wall)),
    }
    points = [
        postures.PosePoint(tid, det["frame_index"][row], det["pts_s"][row], det["det_index"][row], boxes[row], keypoints[row])
        for row, tid in enumerate(track_of_row)
        if tid is not None
    ]
    tables[POSE_EVENTS] = _table(POSE_EVENTS, [
        {"recording_id": recording_id, "track_id": e.track_id, "posture": e.posture, "start_s": e.start_s,
         "end_s": e.end_s, "start_captured_at": wall(e.start_s), "frames": e.frames, "score": e.score,
         "rule_version": postures.RULES_VERSION, "best_frame_index": e.best_frame_index,
         "best_pts_s": e.best_pts_s, "best_det_index": e.best_det_index}
        for e in postures.events(points, sample_fps)
    ])  # fmt: skip
    return tables


def _table(name: str, rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMAS[name])


def _tracks(recording_id, det, boxes, track_of_row, wall) -> list[dict]:
    members: dict[int, list[int]] = {}
    for row, tid in enumerate(track_of_row):
        if tid is not None:
            members.setdefault(tid, []).append(row)
    out = []
    for tid, rows in sorted(members.items()):
        confident = [r for r in rows if det["confidence"][r] >= BEST_VIEW_MIN_CONF] or rows
        area = lambda r: float((boxes[r, 2] - boxes[r, 0]) * (boxes[r, 3] - boxes[r, 1]))  # noqa: E731
        best = max(confident, key=lambda r: (area(r), -r))
        out.append({
            "recording_id": recording_id, "track_id": tid,
            "first_s": det["pts_s"][rows[0]], "last_s": det["pts_s"][rows[-1]],
            "first_captured_at": wall(det["pts_s"][rows[0]]), "frames": len({det["frame_index"][r] for r in rows}),
            "mean_confidence": float(np.mean([det["confidence"][r] for r in rows])),
            "best_frame_index": det["frame_index"][best], "best_pts_s": det["pts_s"][best],
            "best_det_index": det["det_index"][best],
            "best_x1": boxes[best, 0], "best_y1": boxes[best, 1], "best_x2": boxes[best, 2], "best_y2": boxes[best, 3],
        })  # fmt: skip
    return out


def _presence(recording_id, frames, det, track_of_row, sample_fps, max_gap_s, wall) -> list[dict]:
    """Intervals with at least one person; a gap is bridged only if it is short and was analysed:
    a range that was not analysed is never reported as empty, and never merged over."""
    tracks_by_frame: dict[int, set] = {}
    for row, tid in enumerate(track_of_row):
        if tid is not None:
            tracks_by_frame.setdefault(det["frame_index"][row], set()).add(tid)
    interval = 1.0 / sample_fps
    out: list[dict] = []
    current = None
    last_seen = None
    unanalysed_since = False
    for fi, pts, persons, status in zip(*(frames[c].to_pylist() for c in ("frame_index", "pts_s", "persons", "status"))):
        if status not in (STATUS_OK, STATUS_STATIC):  # a static frame was looked at, and inherits its count
            unanalysed_since = True
            continue
        if persons == 0:
            continue
        if current is not None and (pts - last_seen > max_gap_s + 1e-9 or unanalysed_since):
            out.append(current)
            current = None
        if current is None:
            current = {"recording_id": recording_id, "interval": len(out) + 1, "start_s": pts, "frames": 0,
                       "max_persons": 0, "track_ids": set()}  # fmt: skip
        current["end_s"] = pts + interval
        current["frames"] += 1
        current["max_persons"] = max(current["max_persons"], persons)
        current["track_ids"] |= tracks_by_frame.get(fi, set())
        last_seen, unanalysed_since = pts, False
    if current is not None:
        out.append(current)
    for row in out:
        row["track_ids"] = sorted(row["track_ids"])
        row["start_captured_at"], row["end_captured_at"] = wall(row["start_s"]), wall(row["end_s"])
    return out
