"""The CVAT round trip against an output location: export a recording's tracks, and read a
reviewer's corrections back as review decisions (never as changes to the analysis).

What an import records, per vigil track (see ``cvat`` for the file's form):

- no CVAT track carries its ``vigil_track`` any more (deleted in CVAT): ``rejected``;
- its keyframes were moved, added, removed or had keypoints hidden/shown: ``uncertain``, with a
  note summarising the correction (frames changed, keypoints moved and their mean displacement)
  and the corrected geometry as a sealed JSON attachment under
  ``reviews/recording_id=…/cvat/<sha256>.json``, named by its SHA-256 in the record;
- unchanged: nothing, unless the reviewer set its ``verdict`` attribute in CVAT, which then
  gives the decision (also over a correction);
- a track drawn in CVAT (no ``vigil_track``): a decision on a **negative** track id (-1, -2, …:
  a person the analysis did not find), ``uncertain`` unless its ``verdict`` says otherwise, with
  its geometry attached.

Importing the same file again adds nothing: a decision equal to the target's current one (same
decision, same corrected geometry) is not repeated.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

from vigil.errors import ParameterError
from vigil.review.cvat import TrackGeometry, VideoMeta, analysis_tracks, build_xml, parse_xml
from vigil.store.manifest import manifest_bytes
from vigil.store.storage import storage_for
from vigil.uri import join_uri, parse_uri

ATTACHMENT_FORMAT = "cvat-correction-1"
TOLERANCE_PX = 0.02  # the file holds 2 decimals: anything closer is the same point


@dataclass(frozen=True)
class Correction:
    """How a reviewer's geometry differs from the analysis for one track."""

    changed_frames: tuple[int, ...] = ()
    moved_points: int = 0
    point_shift_px: float = 0.0  # mean displacement of the moved, visible-in-both keypoints
    toggled_points: int = 0  # keypoints hidden or shown
    moved_boxes: int = 0
    box_shift_px: float = 0.0  # mean displacement of the moved boxes' corners

    def __bool__(self) -> bool:
        return bool(self.changed_frames)

    def summary(self) -> str:
        frames = ", ".join(map(str, self.changed_frames[:8])) + (", …" if len(self.changed_frames) > 8 else "")
        parts = [f"{len(self.changed_frames)} keyframe(s) changed (frames {frames})"]
        if self.moved_points:
            parts.append(f"{self.moved_points} keypoint(s) moved, mean {self.point_shift_px:.1f} px")
        if self.toggled_points:
            parts.append(f"{self.toggled_points} keypoint(s) hidden or shown")
        if self.moved_boxes:
            parts.append(f"{self.moved_boxes} box(es) moved, mean corner shift {self.box_shift_px:.1f} px")
        return "; ".join(parts)


def export_cvat(out: str, recording: str, boxes: bool = True, conn_id: str | None = None) -> bytes:
    """A recording's tracks as a CVAT for video 1.1 document (see ``vigil.review.cvat``)."""
    from vigil.review import query
    from vigil.review.decisions import _one_recording

    con = query.connect(out, conn_id)
    recording_id = _one_recording(con, recording)
    return build_xml(_video(out, recording_id, conn_id), analysis_tracks(con, recording_id), boxes, recording_id)


def import_cvat(out: str, recording: str, data: bytes, reviewer: str, conn_id: str | None = None) -> list[dict]:
    """Record the corrections a CVAT file makes to a recording's tracks; returns the new records."""
    from vigil.review import query
    from vigil.review.decisions import _one_recording, load_decisions, record_decision

    if not reviewer.strip():
        raise ParameterError("an import needs a reviewer (--reviewer NAME)")
    parsed = parse_xml(data)
    con = query.connect(out, conn_id)
    recording_id = _one_recording(con, recording)
    _check_same_video(parsed.meta, _video(out, recording_id, conn_id))
    expected = analysis_tracks(con, recording_id)
    unknown = sorted(t for t in parsed.tracks if t >= 0 and t not in expected)
    if unknown:
        raise ParameterError(f"the CVAT file names tracks {unknown} that {recording_id} does not have; "
                             "is it another recording's file? (vigil query tracks lists this one's)")  # fmt: skip
    current = {}
    for record in load_decisions(out, conn_id):
        if record["recording_id"] == recording_id and record["target"] == "track":
            current[record["target_id"]] = record
    file_sha256 = hashlib.sha256(data).hexdigest()
    plans: list[tuple[int, str, str, TrackGeometry | None, Correction]] = []
    for track_id, analysis in sorted(expected.items()):
        found = parsed.tracks.get(track_id)
        if found is None:
            plans.append((track_id, "rejected", "deleted in CVAT", None, Correction()))
            continue
        correction = compare(analysis, found, boxes=parsed.has_boxes)
        decision = found.verdict or ("uncertain" if correction else None)
        if decision:
            note = f"corrected in CVAT: {correction.summary()}" if correction else f"marked {decision} in CVAT"
            plans.append((track_id, decision, note, found if correction else None, correction))
    added = list(parsed.added) + [g for t, g in sorted(parsed.tracks.items()) if t < 0]
    taken = min([t for t in current if t < 0] + [0])
    for geometry in added:
        same = [t for t, r in current.items() if t < 0 and r.get("geometry_sha256") == _geometry_sha256(geometry)]
        track_id = same[0] if same else taken - 1
        taken = min(taken, track_id)
        frames = sorted(f for f, p in {**geometry.boxes, **geometry.skeleton}.items() if p is not None)
        note = "person added in CVAT" + (f": {len(frames)} keyframe(s), frames {frames[0]}–{frames[-1]}" if frames else "")
        plans.append((track_id, geometry.verdict or "uncertain", note, geometry, Correction()))

    storage = storage_for(out, conn_id)
    records = []
    for track_id, decision, note, geometry, correction in plans:
        geometry_sha256 = _geometry_sha256(geometry) if geometry is not None else None
        previous = current.get(track_id)
        if previous and previous["decision"] == decision and previous.get("geometry_sha256") == geometry_sha256:
            continue  # already decided exactly so: importing a file twice adds nothing
        extra = {"source": "cvat", "cvat_file_sha256": file_sha256, "geometry_sha256": geometry_sha256}
        if geometry is not None:
            extra["attachment"] = _attach(storage, out, recording_id, track_id, geometry, correction, file_sha256)
            note += f"; geometry: {extra['attachment']['path']}"
        records.append(record_decision(out, recording_id, "track", track_id, decision, note, reviewer, conn_id, extra))
    return records


def compare(analysis: TrackGeometry, found: TrackGeometry, boxes: bool = True) -> Correction:
    """Keyframe by keyframe: what the reviewer moved, added, removed, hid or showed."""
    changed: set[int] = set()
    point_shifts: list[float] = []
    toggled = 0
    for frame in analysis.skeleton.keys() | found.skeleton.keys():
        a, b = analysis.skeleton.get(frame, "missing"), found.skeleton.get(frame, "missing")
        if a == "missing" or b == "missing" or (a is None) != (b is None):
            changed.add(frame)
            continue
        if a is None:
            continue
        for (ax, ay, av), (bx, by, bv) in zip(a, b):
            if av != bv:
                toggled += 1
                changed.add(frame)
            elif av and math.dist((ax, ay), (bx, by)) > TOLERANCE_PX:
                point_shifts.append(math.dist((ax, ay), (bx, by)))
                changed.add(frame)
    box_shifts: list[float] = []
    for frame in (analysis.boxes.keys() | found.boxes.keys()) if boxes else ():
        a, b = analysis.boxes.get(frame, "missing"), found.boxes.get(frame, "missing")
        if a == "missing" or b == "missing" or (a is None) != (b is None):
            changed.add(frame)
        elif a is not None:
            shift = (math.dist(a[:2], b[:2]) + math.dist(a[2:], b[2:])) / 2
            if shift > TOLERANCE_PX:
                box_shifts.append(shift)
                changed.add(frame)
    return Correction(tuple(sorted(changed)), len(point_shifts), _mean(point_shifts), toggled, len(box_shifts),
                      _mean(box_shifts))  # fmt: skip


def _video(out: str, recording_id: str, conn_id: str | None) -> VideoMeta:
    from vigil.review.query import manifests

    manifest = next(m for m in manifests(out, conn_id) if m.recording_id == recording_id)
    probe = manifest.probe
    name = PurePosixPath(parse_uri(manifest.source.uri).key).name
    width, height = probe.get("width"), probe.get("height")
    if probe.get("rotation") in (90, 270):
        width, height = height, width  # coordinates are in displayed (rotated) pixels
    return VideoMeta(name, manifest.frame_count or probe.get("frame_count"), width, height)


def _check_same_video(found: VideoMeta, video: VideoMeta) -> None:
    """Refuse a file made on other frames: its frame numbers would land on the wrong pictures."""
    for what, theirs, ours in (("frames", found.size, video.size), ("width", found.width, video.width),
                               ("height", found.height, video.height)):  # fmt: skip
        if theirs and ours and theirs != ours:
            raise ParameterError(
                f"the CVAT task's {what} is {theirs}, the recording's {ours}: the task must be made from the original "
                f"video ({video.name}) with default settings (start frame 0, frame step 1, no resizing)"
            )


def _attach(storage, out: str, recording_id: str, track_id: int, geometry: TrackGeometry, correction: Correction,
            file_sha256: str) -> dict:  # fmt: skip
    """Publish the corrected geometry, sealed and named by its SHA-256 (the same bytes once)."""
    from vigil.review.decisions import REVIEWS

    body = {"format": ATTACHMENT_FORMAT, "recording_id": recording_id, "track_id": track_id,
            "cvat_file_sha256": file_sha256, "correction": asdict(correction), **geometry.to_dict()}  # fmt: skip
    data = manifest_bytes(body)
    sha256 = hashlib.sha256(data).hexdigest()
    path = f"{REVIEWS}/recording_id={recording_id}/cvat/{sha256}.json"
    storage.write_bytes(join_uri(out, path), data, if_absent=True)  # present already: the very same bytes
    return {"path": path, "sha256": sha256}


def _geometry_sha256(geometry: TrackGeometry) -> str:
    return hashlib.sha256(json.dumps(geometry.to_dict(), sort_keys=True).encode()).hexdigest()


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0
