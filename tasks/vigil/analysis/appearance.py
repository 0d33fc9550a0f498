"""One appearance descriptor per track: which views of a person to describe, and how to join them.

A track's descriptor is the mean of the descriptors of a few of its views — its best view (the
one review pictures show) and up to ``VIEWS_PER_TRACK - 1`` more, the largest confident box in each
of equal parts of the track's time span, so the views differ in pose and place — L2-normalised.
Only those frames are decoded again: a handful per track, whatever the recording's length.
The features themselves come from ``vigil.model.appearance`` (whole-body crops; never faces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
import pyarrow as pa

from vigil.background import prefetch
from vigil.store.schema import SCHEMAS, TRACK_APPEARANCE

VIEWS_PER_TRACK = 5
CROPS_AHEAD = 64  # frames whose crops run ahead of the encoder: about 96 KiB per person seen in each
MIN_VIEW_CONF = 0.5  # as for the best view (analysis.derived.BEST_VIEW_MIN_CONF)

Fetch = Callable[[list[tuple[int, float]]], Iterator[tuple[int, np.ndarray]]]


@dataclass(frozen=True)
class View:
    track_id: int
    frame_index: int
    pts_s: float
    box: tuple[float, float, float, float]


def choose_views(tracks: pa.Table, detections: pa.Table, track_points: pa.Table,
                 per_track: int = VIEWS_PER_TRACK) -> dict[int, list[View]]:  # fmt: skip
    """``{track_id: views}``: the best view first, then the largest confident box of each of
    ``per_track - 1`` equal parts of the track's other detections, in time order."""
    track_of = {(fi, di): tid for fi, di, tid in zip(*(track_points[c].to_pylist() for c in ("frame_index", "det_index", "track_id")))}
    rows: dict[int, list[View]] = {}
    confidence: dict[tuple[int, int], float] = {}
    columns = ("frame_index", "det_index", "pts_s", "confidence", "x1", "y1", "x2", "y2")
    for fi, di, pts, conf, *box in zip(*(detections[c].to_pylist() for c in columns)):
        tid = track_of.get((fi, di))
        if tid is not None:
            rows.setdefault(tid, []).append(View(tid, fi, pts, tuple(box)))
            confidence[(fi, tid)] = conf
    chosen: dict[int, list[View]] = {}
    for track in tracks.to_pylist():
        tid = track["track_id"]
        best = View(tid, track["best_frame_index"], track["best_pts_s"],
                    (track["best_x1"], track["best_y1"], track["best_x2"], track["best_y2"]))  # fmt: skip
        others = sorted((v for v in rows.get(tid, []) if v.frame_index != best.frame_index), key=lambda v: v.pts_s)
        confident = [v for v in others if confidence[(v.frame_index, tid)] >= MIN_VIEW_CONF] or others
        views = [best]
        for part in np.array_split(np.arange(len(confident)), max(0, min(per_track - 1, len(confident)))):
            if len(part):
                views.append(max((confident[i] for i in part), key=_area))
        chosen[tid] = views
    return chosen


def _area(view: View) -> float:
    x1, y1, x2, y2 = view.box
    return (x2 - x1) * (y2 - y1)


class Encoder(Protocol):
    """What ``describe_tracks`` needs of ``vigil.model.appearance.AppearanceEncoder``."""

    batch_size: int
    method_version: str

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray | None]: ...

    def describe_crops(self, crops: list[np.ndarray]) -> np.ndarray: ...


def describe_tracks(recording_id: str, views: dict[int, list[View]], fetch: Fetch, encoder: Encoder) -> pa.Table:
    """The ``track_appearance`` rows: each track's views described (one decode per frame, all the
    tracks seen in it at once, crops of several frames per forward pass), averaged and normalised.
    A track none of whose frames decodes is left out rather than given a made-up descriptor."""
    by_frame: dict[int, list[View]] = {}
    for track_views in views.values():
        for view in track_views:
            by_frame.setdefault(view.frame_index, []).append(view)
    wanted = sorted({(v.frame_index, v.pts_s) for vs in by_frame.values() for v in vs}, key=lambda item: item[1])
    sums: dict[int, np.ndarray] = {}
    used: dict[int, list[int]] = {}
    pending: list[tuple[View, np.ndarray]] = []  # crops are small (96 KiB): frames are not kept

    def describe_pending() -> None:
        for (view, _), descriptor in zip(pending, encoder.describe_crops([crop for _, crop in pending])):
            sums[view.track_id] = sums.get(view.track_id, 0) + descriptor
            used.setdefault(view.track_id, []).append(view.frame_index)
        pending.clear()

    def cropped() -> Iterator[list[tuple[View, np.ndarray]]]:
        for frame_index, image in fetch(wanted):
            here = by_frame.get(frame_index, [])
            crops = encoder.crops(image, np.array([v.box for v in here], np.float64)) if here else []
            yield [(view, crop) for view, crop in zip(here, crops) if crop is not None]

    # Decoding and cropping run ahead, in a thread, while the encoder describes a batch: crops are
    # small, so they may run a few batches ahead (full frames could not: 6 MB each at 1080p).
    for found in prefetch(cropped(), depth=CROPS_AHEAD):
        pending.extend(found)
        if len(pending) >= encoder.batch_size:
            describe_pending()
    if pending:
        describe_pending()
    return _table(recording_id, sums, used, encoder.method_version)


def _table(recording_id: str, sums: dict[int, np.ndarray], used: dict[int, list[int]], method_version: str) -> pa.Table:
    rows = []
    for tid in sorted(sums):
        mean = sums[tid] / np.linalg.norm(sums[tid])
        rows.append({"recording_id": recording_id, "track_id": tid, "method_version": method_version,
                     "dims": int(mean.shape[0]), "descriptor": mean.astype(np.float32).tolist(),
                     "view_frames": sorted(used[tid])})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=SCHEMAS[TRACK_APPEARANCE])


def cosine_ranking(query: np.ndarray, candidates: Iterable[tuple[object, np.ndarray]]) -> list[tuple[object, float]]:
    """``(key, similarity)`` best first; descriptors are unit vectors, so the dot product is the cosine."""
    scored = [(key, float(np.dot(query, np.asarray(vector, np.float32)))) for key, vector in candidates]
    return sorted(scored, key=lambda item: -item[1])
