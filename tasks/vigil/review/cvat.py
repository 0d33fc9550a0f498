"""CVAT for video 1.1 XML: vigil's tracks out as skeleton (and box) tracks, and CVAT's back in.

One vigil track becomes one CVAT track of the ``person`` skeleton (the 17 COCO keypoints) and,
unless left out, one track of ``person_box`` rectangles. A keyframe sits on every sampled frame
where vigil saw the person, at the source video's frame index (presentation order from 0, which
is how CVAT numbers the frames of a video task), so the XML lines up with the original video
uploaded to CVAT as a task with default settings (start frame 0, step 1). As in vigil's presence
table, a sampled frame stands for its sampling interval: the track is marked ``outside`` at the
next analysed frame (status ``ok``) where vigil did not see the person. Keypoints whose confidence
is below ``VISIBLE_CONF`` are written as ``outside`` (absent), as CVAT cannot hold a confidence.

Every shape carries two attributes of the labels defined in ``<meta>``: ``vigil_track`` (the
vigil track id; immutable, it is how ``vigil import-cvat`` tells vigil's tracks from the ones a
reviewer draws) and ``verdict`` (``none``, or a review decision the reviewer may set in CVAT).

This module only builds and reads the XML; ``cvat_import`` turns differences into review records.
"""

from __future__ import annotations

import bisect
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone

from vigil.errors import ParameterError
from vigil.store.schema import COCO_KEYPOINTS

SKELETON = "person"
BOX = "person_box"
TRACK_ATTR = "vigil_track"
VERDICT_ATTR = "verdict"
VERDICTS = ("none", "confirmed", "rejected", "uncertain")
VISIBLE_CONF = 0.5  # the keypoint confidence Ultralytics draws from; below it a point is "outside"
# COCO's skeleton edges (1-based keypoint numbers), as in the COCO person category.
EDGES = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
         (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))  # fmt: skip
# Where CVAT's label editor draws each keypoint (a 100 x 100 canvas): a person facing the viewer.
_TEMPLATE = ((50, 10), (53, 8), (47, 8), (57, 10), (43, 10), (62, 25), (38, 25), (68, 40), (32, 40),
             (72, 55), (28, 55), (58, 55), (42, 55), (59, 74), (41, 74), (60, 92), (40, 92))  # fmt: skip

Point = tuple[float, float, bool]  # x, y, visible
Box = tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass
class TrackGeometry:
    """One person in CVAT terms: keyframes by frame index; ``None`` marks an ``outside`` keyframe.

    Attributes:
        skeleton: frame -> 17 ``(x, y, visible)`` in COCO order, or ``None`` (person not there).
        boxes: frame -> ``(x1, y1, x2, y2)``, or ``None``.
        verdict: the ``verdict`` attribute, where a reviewer set one in CVAT.
    """

    skeleton: dict[int, tuple[Point, ...] | None] = field(default_factory=dict)
    boxes: dict[int, Box | None] = field(default_factory=dict)
    verdict: str | None = None

    def to_dict(self) -> dict:
        return {
            "skeleton": {str(f): None if p is None else [list(q) for q in p] for f, p in sorted(self.skeleton.items())},
            "boxes": {str(f): None if b is None else list(b) for f, b in sorted(self.boxes.items())},
        }


@dataclass(frozen=True)
class VideoMeta:
    """What ties an annotation file to one video: its name, frame count and frame size."""

    name: str
    size: int | None
    width: int | None
    height: int | None


@dataclass
class CvatFile:
    """A parsed CVAT for video file: vigil's tracks by id, and the tracks a reviewer added."""

    meta: VideoMeta
    tracks: dict[int, TrackGeometry]
    added: list[TrackGeometry]
    has_boxes: bool


def analysis_tracks(con, recording_id: str) -> dict[int, TrackGeometry]:
    """Every track of a recording as CVAT keyframes, from the ``detections`` and ``frames`` views."""
    analysed = [f for (f,) in con.execute(
        "SELECT DISTINCT frame_index FROM frames WHERE recording_id = ? AND status = 'ok' AND frame_index IS NOT NULL"
        " ORDER BY 1", [recording_id]).fetchall()]  # fmt: skip
    rows = con.execute(
        """SELECT track_id, frame_index, x1, y1, x2, y2, kp_x, kp_y, kp_conf FROM detections
           WHERE recording_id = ? AND track_id IS NOT NULL ORDER BY track_id, frame_index, det_index""",
        [recording_id],
    ).fetchall()
    tracks: dict[int, TrackGeometry] = {}
    for track_id, frame, x1, y1, x2, y2, xs, ys, confs in rows:
        track = tracks.setdefault(int(track_id), TrackGeometry())
        points = tuple((_r(x), _r(y), c >= VISIBLE_CONF) for x, y, c in zip(xs, ys, confs))
        track.skeleton[int(frame)] = points
        track.boxes[int(frame)] = (_r(x1), _r(y1), _r(x2), _r(y2))
    for track in tracks.values():
        for frame in sorted(track.skeleton):
            later = bisect.bisect_right(analysed, frame)  # the next analysed frame, seen or not
            if later < len(analysed) and analysed[later] not in track.skeleton:
                track.skeleton[analysed[later]] = track.boxes[analysed[later]] = None
    return tracks


def build_xml(meta: VideoMeta, tracks: dict[int, TrackGeometry], boxes: bool = True, recording_id: str = "") -> bytes:
    """The CVAT for video 1.1 document for ``tracks`` of the video ``meta`` describes."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    root.append(_meta(meta, boxes, recording_id))
    number = 0
    for track_id, track in sorted(tracks.items()):
        element = ET.SubElement(root, "track", id=str(number), label=SKELETON, source="auto")
        number += 1
        for frame, points in sorted(track.skeleton.items()):
            skeleton = ET.SubElement(element, "skeleton", frame=str(frame), keyframe="1", z_order="0")
            for name, (x, y, visible) in zip(COCO_KEYPOINTS, points or _HIDDEN):
                ET.SubElement(skeleton, "points", label=name, outside=str(int(points is None or not visible)),
                              occluded="0", keyframe="1", points=f"{x:.2f},{y:.2f}")  # fmt: skip
            _attributes(skeleton, track_id)
        if not boxes:
            continue
        element = ET.SubElement(root, "track", id=str(number), label=BOX, source="auto")
        number += 1
        last = (0.0, 0.0, 0.0, 0.0)
        for frame, box in sorted(track.boxes.items()):
            last = box or last  # an outside keyframe keeps the last geometry, as CVAT's own files do
            x1, y1, x2, y2 = last
            shape = ET.SubElement(element, "box", frame=str(frame), keyframe="1", outside=str(int(box is None)),
                                  occluded="0", xtl=f"{x1:.2f}", ytl=f"{y1:.2f}", xbr=f"{x2:.2f}", ybr=f"{y2:.2f}",
                                  z_order="0")  # fmt: skip
            _attributes(shape, track_id)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def parse_xml(data: bytes) -> CvatFile:
    """Read a CVAT for video 1.1 file (as CVAT exports it, or as ``build_xml`` wrote it)."""
    if re.search(rb"<!(DOCTYPE|ENTITY)", data):
        raise ParameterError("the CVAT file declares a DTD or entities; CVAT never writes them, so it is refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ParameterError(f"the CVAT file is not well-formed XML ({exc}); export it again as 'CVAT for video 1.1'") from exc
    if root.tag != "annotations" or root.findtext("version") != "1.1":
        raise ParameterError("not a CVAT 1.1 annotation file (expected <annotations><version>1.1</version>)")
    if root.find("image") is not None:
        raise ParameterError("this is a 'CVAT for images' file; export the task as 'CVAT for video 1.1'")
    task = next((t for t in (root.find("meta/task"), root.find("meta/job")) if t is not None), ET.Element("task"))
    meta = VideoMeta(task.findtext("source") or task.findtext("name") or "", _int(task.findtext("size")),
                     _int(task.findtext("original_size/width")), _int(task.findtext("original_size/height")))  # fmt: skip
    tracks: dict[int, TrackGeometry] = {}
    added: list[TrackGeometry] = []
    has_boxes = False
    for element in root.iter("track"):
        label = element.get("label")
        if label not in (SKELETON, BOX):
            continue
        has_boxes |= label == BOX
        shapes = list(element.iter("skeleton" if label == SKELETON else "box"))
        ids = {s.findtext(f"attribute[@name='{TRACK_ATTR}']", "").strip() for s in shapes} - {""}
        if len(ids) > 1:
            raise ParameterError(f"a CVAT track carries {TRACK_ATTR} values {sorted(ids)}; one track must be one person")
        number = ids.pop() if ids else None
        if number is not None and not re.fullmatch(r"-?\d+", number):
            raise ParameterError(f"{TRACK_ATTR} must be a track number, got {number!r}")
        if number is None:  # drawn by a reviewer: a person the analysis did not find
            track = TrackGeometry()
            added.append(track)
        else:
            track = tracks.setdefault(int(number), TrackGeometry())
        for shape in shapes:
            frame = int(shape.get("frame"))
            if label == SKELETON:
                track.skeleton[frame] = _skeleton(shape)
            else:
                outside = shape.get("outside") == "1"
                track.boxes[frame] = None if outside else tuple(float(shape.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
            verdict = shape.findtext(f"attribute[@name='{VERDICT_ATTR}']", "").strip()
            if verdict in VERDICTS[1:]:
                track.verdict = verdict
    return CvatFile(meta, tracks, added, has_boxes)


def labels_json(boxes: bool = True) -> str:
    """The same labels in the form CVAT's label constructor takes ("Raw"), to create them in a task."""
    attributes = [_attribute_dict(TRACK_ATTR), _attribute_dict(VERDICT_ATTR)]
    labels = [{"name": SKELETON, "type": "skeleton", "attributes": attributes, "svg": _svg(),
               "sublabels": [{"name": n, "type": "points", "attributes": []} for n in COCO_KEYPOINTS]}]  # fmt: skip
    if boxes:
        labels.append({"name": BOX, "type": "rectangle", "attributes": attributes})
    return json.dumps(labels, indent=2)


_HIDDEN = ((0.0, 0.0, False),) * len(COCO_KEYPOINTS)


def _r(value: float) -> float:
    return round(float(value), 2)  # the file's precision: what CVAT gives back is compared to this


def _int(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


def _skeleton(shape: ET.Element) -> tuple[Point, ...] | None:
    points = {p.get("label"): p for p in shape.iter("points")}
    if not points or all(p.get("outside") == "1" for p in points.values()):
        return None
    out = []
    for name in COCO_KEYPOINTS:
        element = points.get(name)
        if element is None:
            out.append((0.0, 0.0, False))
            continue
        x, y = (float(v) for v in element.get("points").split(";")[0].split(","))
        out.append((x, y, element.get("outside") != "1"))
    return tuple(out)


def _attributes(shape: ET.Element, track_id: int) -> None:
    ET.SubElement(shape, "attribute", name=TRACK_ATTR).text = str(track_id)
    ET.SubElement(shape, "attribute", name=VERDICT_ATTR).text = "none"


def _attribute_dict(name: str) -> dict:
    if name == TRACK_ATTR:
        return {"name": name, "mutable": False, "input_type": "text", "default_value": "", "values": [""]}
    return {"name": name, "mutable": False, "input_type": "select", "default_value": "none", "values": list(VERDICTS)}


def _meta(meta: VideoMeta, boxes: bool, recording_id: str) -> ET.Element:
    now = datetime.now(timezone.utc).isoformat()
    element = ET.Element("meta")
    task = ET.SubElement(element, "task")
    size = meta.size or 0
    for tag, text in (("id", "0"), ("name", recording_id or meta.name), ("size", str(size)), ("mode", "interpolation"),
                      ("overlap", "0"), ("bugtracker", ""), ("created", now), ("updated", now), ("subset", "default"),
                      ("start_frame", "0"), ("stop_frame", str(max(size - 1, 0))), ("frame_filter", ""),
                      ("source", meta.name)):  # fmt: skip
        ET.SubElement(task, tag).text = text
    labels = ET.SubElement(task, "labels")
    attributes = [_attribute_dict(TRACK_ATTR), _attribute_dict(VERDICT_ATTR)]
    _label(labels, SKELETON, "skeleton", attributes, svg=_svg())
    for name in COCO_KEYPOINTS:
        _label(labels, name, "points", [], parent=SKELETON)
    if boxes:
        _label(labels, BOX, "rectangle", attributes)
    original = ET.SubElement(task, "original_size")
    ET.SubElement(original, "width").text = str(meta.width or 0)
    ET.SubElement(original, "height").text = str(meta.height or 0)
    ET.SubElement(element, "dumped").text = now
    return element


def _label(labels: ET.Element, name: str, kind: str, attributes: list[dict], svg: str | None = None,
           parent: str | None = None) -> None:  # fmt: skip
    label = ET.SubElement(labels, "label")
    ET.SubElement(label, "name").text = name
    ET.SubElement(label, "type").text = kind
    listed = ET.SubElement(label, "attributes")
    for attribute in attributes:
        item = ET.SubElement(listed, "attribute")
        for key in ("name", "mutable", "input_type", "default_value"):
            ET.SubElement(item, key).text = str(attribute[key])
        ET.SubElement(item, "values").text = "\n".join(attribute["values"])
    if svg is not None:
        ET.SubElement(label, "svg").text = svg
    if parent is not None:
        ET.SubElement(label, "parent").text = parent


def _svg() -> str:
    """CVAT's skeleton drawing: an edge per COCO bone, a node per keypoint (named by label)."""
    lines = [
        f'<line x1="{_TEMPLATE[a - 1][0]}" y1="{_TEMPLATE[a - 1][1]}" x2="{_TEMPLATE[b - 1][0]}" y2="{_TEMPLATE[b - 1][1]}" '
        f'stroke="black" data-type="edge" data-node-from="{a}" stroke-width="0.5" data-node-to="{b}"></line>'
        for a, b in EDGES
    ]
    circles = [
        f'<circle r="1.5" stroke="black" fill="#b3b3b3" cx="{x}" cy="{y}" stroke-width="0.1" data-type="element node" '
        f'data-element-id="{i}" data-node-id="{i}" data-label-name="{name}"></circle>'
        for i, (name, (x, y)) in enumerate(zip(COCO_KEYPOINTS, _TEMPLATE), 1)
    ]
    return "".join(lines + circles)
