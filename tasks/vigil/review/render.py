"""Pictures for review: a timeline, a contact sheet of each track's best view, and a thumbnail
with the skeleton drawn for each posture event. Faces can be blurred in everything rendered
(never in the data).
"""

from __future__ import annotations

import io
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from vigil.analysis.postures import MIN_CONF
from vigil.model.keypoints import HEAD, SKELETON
POSTURE_COLOURS = {"lying": "#d62728", "hands_raised": "#ff7f0e", "arms_behind_back": "#9467bd",
                   "kneeling_or_crouching": "#8c564b", "suspended": "#e377c2"}  # fmt: skip

# (frame_index, pts_s) wanted -> (frame_index, BGR image) yielded one at a time, in time order
FrameFetcher = Callable[[list[tuple[int, float]]], Iterator[tuple[int, np.ndarray]]]
CONTACT_SHEET_LIMIT = 120  # tracks on one contact sheet


def timecode(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{int(round((seconds - whole) * 10)) % 10}"


def timeline_png(frames: pa.Table, presence: pa.Table, events: pa.Table, coverage: list, title: str) -> bytes:
    """Persons per sampled frame over time, presence intervals shaded, events marked, and the
    ranges that were not analysed hatched (never drawn as empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = frames.filter(pa.compute.is_in(frames["status"], pa.array(["ok", "static"])))
    fig, (ax, lane) = plt.subplots(2, 1, figsize=(12, 3.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for start, end in zip(presence["start_s"].to_pylist(), presence["end_s"].to_pylist()):
        ax.axvspan(start, end, color="#2ca02c", alpha=0.15, lw=0)
    for start, end, status in coverage:
        if status != "ok":
            for axis in (ax, lane):
                axis.axvspan(start, end, facecolor="none", hatch="///", edgecolor="#7f7f7f", lw=0)
    ax.step(ok["pts_s"].to_pylist(), ok["persons"].to_pylist(), where="post", color="#1f77b4", lw=1)
    ax.set_ylabel("persons")
    ax.set_ylim(0, max([1, *ok["persons"].to_pylist()]) + 0.5)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title, fontsize=9, loc="left")
    postures = sorted(set(events["posture"].to_pylist()))
    for row, posture in enumerate(postures):
        spans = [(s, e - s) for s, e, p in zip(*(events[c].to_pylist() for c in ("start_s", "end_s", "posture"))) if p == posture]
        lane.broken_barh(spans, (row - 0.4, 0.8), color=POSTURE_COLOURS.get(posture, "k"))
    lane.set_yticks(range(len(postures)), postures, fontsize=7)
    if not postures:
        lane.text(0.5, 0.5, "no posture events", transform=lane.transAxes, ha="center", va="center", color="#888")
    lane.set_ylim(-0.6, max(len(postures), 1) - 0.4)
    lane.set_xlabel("seconds from the first frame (shaded: people present; hatched: not analysed)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def blur_faces(image: np.ndarray, keypoints: np.ndarray, box: np.ndarray) -> None:
    """Blur each person's head in place: the box around the head keypoints (or the top fifth of
    the person's box when none is seen), grown by half its size."""
    import cv2

    height, width = image.shape[:2]
    for kp, person in zip(keypoints, box):
        head = kp[list(HEAD)]
        head = head[head[:, 2] >= 0.3]
        if len(head):
            x1, y1 = head[:, 0].min(), head[:, 1].min()
            x2, y2 = head[:, 0].max(), head[:, 1].max()
            size = max(x2 - x1, y2 - y1, (person[2] - person[0]) * 0.25)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            x1, x2, y1, y2 = cx - size, cx + size, cy - size, cy + size
        else:
            x1, y1, x2 = person[0], person[1], person[2]
            y2 = person[1] + (person[3] - person[1]) * 0.2
        x1, y1 = int(max(0, x1)), int(max(0, y1))
        x2, y2 = int(min(width, x2)), int(min(height, y2))
        if x2 > x1 and y2 > y1:
            kernel = max(3, ((x2 - x1) // 3) | 1)
            image[y1:y2, x1:x2] = cv2.GaussianBlur(image[y1:y2, x1:x2], (kernel, kernel), 0)


def draw_person(image: np.ndarray, box: np.ndarray, keypoints: np.ndarray, colour=(0, 200, 255)) -> None:
    import cv2

    for a, b in SKELETON:
        if keypoints[a, 2] >= MIN_CONF and keypoints[b, 2] >= MIN_CONF:
            cv2.line(image, tuple(map(int, keypoints[a, :2])), tuple(map(int, keypoints[b, :2])), colour, 2, cv2.LINE_AA)
    for x, y, c in keypoints:
        if c >= MIN_CONF:
            cv2.circle(image, (int(x), int(y)), 3, (255, 255, 255), -1, cv2.LINE_AA)
    cv2.rectangle(image, tuple(map(int, box[:2])), tuple(map(int, box[2:])), colour, 1)


def _label(image: np.ndarray, text: str) -> None:
    import cv2

    cv2.rectangle(image, (0, 0), (min(image.shape[1], 8 + 7 * len(text)), 18), (0, 0, 0), -1)
    cv2.putText(image, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)


def _jpeg(image: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 88])
    return data.tobytes()


def _people_in(detections: dict, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
    rows = [i for i, f in enumerate(detections["frame_index"]) if f == frame_index]
    boxes = np.array([[detections[c][i] for c in ("x1", "y1", "x2", "y2")] for i in rows]).reshape(-1, 4)
    keypoints = np.array([np.stack([detections["kp_x"][i], detections["kp_y"][i], detections["kp_conf"][i]], 1)
                          for i in rows]).reshape(-1, 17, 3)  # fmt: skip
    return boxes, keypoints


def contact_sheet_jpeg(tracks: pa.Table, detections: pa.Table, fetch: FrameFetcher, blur: bool,
                       per_row: int = 6, limit: int = CONTACT_SHEET_LIMIT) -> bytes | None:  # fmt: skip
    """Each track's best view, cropped, with its id and time code, in a grid (the ``limit``
    longest-seen tracks when there are more; the report says so). A track whose picture cannot
    be decoded keeps its place, marked so, rather than vanishing from the sheet."""
    import cv2

    rows = sorted(tracks.to_pylist(), key=lambda r: (-r["frames"], r["track_id"]))[:limit]
    rows.sort(key=lambda r: r["track_id"])
    if not rows:
        return None
    det = detections.to_pydict()
    wanted: dict[int, list[dict]] = {}
    for row in rows:
        wanted.setdefault(row["best_frame_index"], []).append(row)
    tiles: dict[int, np.ndarray] = {}
    for frame_index, image in fetch([(r["best_frame_index"], r["best_pts_s"]) for r in rows]):
        if blur:
            blur_faces(image, *reversed(_people_in(det, frame_index)))
        for row in wanted[frame_index]:
            tiles[row["track_id"]] = _tile(image, row, cv2)
    ordered = [tiles[r["track_id"]] if r["track_id"] in tiles else _undecodable_tile(r) for r in rows]
    while len(ordered) % per_row and len(ordered) > per_row:
        ordered.append(np.full_like(ordered[0], 32))
    lines = [np.hstack(ordered[i : i + per_row]) for i in range(0, len(ordered), per_row)]
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=32) for line in lines]
    return _jpeg(np.vstack(lines))


def _undecodable_tile(row: dict) -> np.ndarray:
    tile = np.full((220, 160, 3), 32, np.uint8)
    _label(tile, f"#{row['track_id']} {timecode(row['best_pts_s'])}")
    _label(tile[100:], "not decodable")
    return tile


def _tile(image: np.ndarray, row: dict, cv2) -> np.ndarray:
    x1, y1, x2, y2 = (row[k] for k in ("best_x1", "best_y1", "best_x2", "best_y2"))
    pad = 0.1 * max(x2 - x1, y2 - y1)
    crop = image[int(max(0, y1 - pad)) : int(min(image.shape[0], y2 + pad)), int(max(0, x1 - pad)) : int(min(image.shape[1], x2 + pad))]
    crop = cv2.resize(crop, (max(1, int(200 * crop.shape[1] / max(1, crop.shape[0]))), 200))[:, :160]
    tile = np.full((220, 160, 3), 32, np.uint8)
    offset = (160 - crop.shape[1]) // 2
    tile[20:220, offset : offset + crop.shape[1]] = crop
    _label(tile, f"#{row['track_id']} {timecode(row['best_pts_s'])}")
    return tile


def event_thumbnails(events: pa.Table, detections: pa.Table, fetch: FrameFetcher, blur: bool) -> list[bytes]:
    """One picture per event: its best frame, the person's skeleton drawn, posture and time code
    (empty bytes where the frame could not be decoded)."""
    import cv2

    det = detections.to_pydict()
    rows = events.to_pylist()
    by_frame: dict[int, list[int]] = {}
    for number, row in enumerate(rows):
        by_frame.setdefault(row["best_frame_index"], []).append(number)
    thumbnails = [b""] * len(rows)
    for frame_index, image in fetch([(r["best_frame_index"], r["best_pts_s"]) for r in rows]):
        boxes, keypoints = _people_in(det, frame_index)
        if blur:
            blur_faces(image, keypoints, boxes)
        for number in by_frame[frame_index]:
            row, picture = rows[number], image.copy()
            if row["best_det_index"] < len(boxes):
                draw_person(picture, boxes[row["best_det_index"]], keypoints[row["best_det_index"]])
            picture = cv2.resize(picture, (480, int(picture.shape[0] * 480 / picture.shape[1])))
            _label(picture, f"{row['posture']} #{row['track_id']} {timecode(row['best_pts_s'])} score {row['score']:.2f}")
            thumbnails[number] = _jpeg(picture)
    return thumbnails
