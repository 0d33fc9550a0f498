"""How well "find this person" retrieves the same person seen by another camera.

    PYTHONPATH=tasks .venv/bin/python bench/appearance.py [--seconds 139.4] [--sample-fps 1]

There is one sample recording, so the second "camera" is made from it: the footage from
``OFFSET_S`` on, cropped, mirrored, scaled to another size and shifted in colour (warmer, darker,
less contrast), re-encoded with PyAV, with a recording start ``CLOCK_SKEW`` away from camera 1's.
Both cameras are processed into one output exactly as ``vigil process`` does (tracks and their
descriptors included). The ground truth comes from the construction alone: a camera-2 track is the
same person as the camera-1 track whose boxes, carried through the same crop, mirror and scale,
overlap it best (mean IoU over the instants both tracks cover; at least ``MIN_MATCH_IOU``).

For each camera-1 track with a true match, ``vigil query similar`` ranks every other track; the
rank of the true match among camera-2 tracks is recorded. Top-1 and top-3 are the fractions ranked
first and in the first three; chance is 1/n and 3/n for n camera-2 tracks.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = ROOT / "tests" / "data" / "one-by-one-person-detection.mp4"

OFFSET_S = 7  # camera 2 starts this many seconds into the footage (whole seconds: sampled instants coincide)
CROP = (64, 16, 704, 424)  # x0, y0, x1, y1 of the source kept by camera 2
SIZE = (480, 306)  # camera 2's frame size (width, height): a different scale
CLOCK_SKEW = timedelta(hours=2, minutes=13, seconds=OFFSET_S)  # camera 2's clock against camera 1's
START_1 = datetime(2024, 3, 1, 22, 0, 0, tzinfo=timezone.utc)
MIN_MATCH_IOU = 0.3


@dataclass(frozen=True)
class Camera:
    offset_s: float
    crop: tuple[int, int, int, int]
    size: tuple[int, int]

    def box(self, x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
        """A camera-1 box as camera 2 sees it: cropped, mirrored, scaled."""
        cx0, cy0, cx1, cy1 = self.crop
        sx, sy = self.size[0] / (cx1 - cx0), self.size[1] / (cy1 - cy0)
        left, right = (cx1 - cx0) - (x2 - cx0), (cx1 - cx0) - (x1 - cx0)  # mirrored about the crop
        return left * sx, (y1 - cy0) * sy, right * sx, (y2 - cy0) * sy


SECOND = Camera(OFFSET_S, CROP, SIZE)


def make_second_camera(source: Path, target: Path, seconds: float, camera: Camera = SECOND) -> Path:
    """Camera 2: ``seconds`` of the footage from ``camera.offset_s``, transformed and re-encoded."""
    import av

    x0, y0, x1, y1 = camera.crop
    gain = np.array([0.80, 0.92, 1.10], np.float32)  # BGR: warmer, a little darker
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream_in = inp.streams.video[0]
        rate = stream_in.average_rate
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = camera.size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "26", "preset": "veryfast", "g": "20"}
        for frame in inp.decode(stream_in):
            t = float(frame.pts * stream_in.time_base)
            if t < camera.offset_s - 1e-6:
                continue
            if t >= camera.offset_s + seconds - 1e-6:
                break
            image = frame.to_ndarray(format="bgr24")[y0:y1, x0:x1, :][:, ::-1, :]
            image = np.clip((image.astype(np.float32) * gain - 128) * 0.85 + 128 - 6, 0, 255).astype(np.uint8)
            shifted = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24").reformat(*camera.size)
            shifted.pts = round((t - camera.offset_s) * rate)
            shifted.time_base = Fraction(1, 1) / rate
            out.mux(stream.encode(shifted))
        out.mux(stream.encode(None))
    return target


def make_first_camera(source: Path, target: Path, seconds: float) -> Path:
    """Camera 1: the footage's first ``seconds``, cut losslessly (stream copy)."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream_in = inp.streams.video[0]
        stream = out.add_stream_from_template(stream_in)
        for packet in inp.demux(stream_in):
            if packet.dts is None:
                continue
            if packet.pts is not None and float(packet.pts * stream_in.time_base) >= seconds and packet.is_keyframe:
                break
            packet.stream = stream
            out.mux(packet)
    return target


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ground_truth(con, rec1: str, rec2: str, camera: Camera = SECOND) -> dict[int, int]:
    """``{camera-1 track: camera-2 track}`` from the construction: time offset plus box transform."""
    rows = con.execute(
        "SELECT recording_id, track_id, pts_s, x1, y1, x2, y2 FROM detections WHERE track_id IS NOT NULL"
    ).fetchall()
    first: dict[float, list] = {}
    second: dict[float, list] = {}
    for rid, tid, pts, *box in rows:
        if rid == rec1:
            first.setdefault(round(pts - camera.offset_s, 3), []).append((tid, camera.box(*box)))
        elif rid == rec2:
            second.setdefault(round(pts, 3), []).append((tid, tuple(box)))
    scores: dict[tuple[int, int], list[float]] = {}
    for instant, seen in second.items():
        for t2, b2 in seen:
            for t1, b1 in first.get(instant, []):
                scores.setdefault((t1, t2), []).append(_iou(b1, b2))
    best: dict[int, tuple[float, int]] = {}
    for (t1, t2), values in scores.items():
        mean = float(np.mean(values))
        if mean >= MIN_MATCH_IOU and mean > best.get(t1, (0.0, 0))[0]:
            best[t1] = (mean, t2)
    return {t1: t2 for t1, (_, t2) in best.items()}


def evaluate(out: str, rec1: str, rec2: str) -> dict:
    """Both directions: for each track with a true match in the other camera, the rank of that
    match among the other camera's tracks, as ``vigil query similar`` orders them."""
    from vigil.review import query
    from vigil.review.similar import similar

    con = query.connect(out)
    truth = ground_truth(con, rec1, rec2)
    pairs = [(rec1, t1, rec2, t2) for t1, t2 in truth.items()] + [(rec2, t2, rec1, t1) for t1, t2 in truth.items()]
    ranks, margins = [], []
    for rec, track, other, match in sorted(pairs):
        ranked = [(row[1], row[2]) for row in similar(con, rec, track, top=None).rows if row[0] == other]
        order = [tid for tid, _ in ranked]
        ranks.append(order.index(match) + 1 if match in order else None)
        true_sim = dict(ranked).get(match)
        wrong = [sim for tid, sim in ranked if tid != match]
        if true_sim is not None and wrong:
            margins.append(round(true_sim - max(wrong), 4))
    return _summary(ranks, margins, con, rec1, rec2) | {"truth": truth}


def evaluate_other_moments(out: str, rec1: str, rec2: str) -> dict:
    """A harder variant: camera 1's descriptors from the first half of each track only, camera 2's
    from the second half, so the two never describe the same instant (pose and place differ)."""
    from vigil.analysis.appearance import choose_views, describe_tracks
    from vigil.model.appearance import load_encoder
    from vigil.review import query
    from vigil.review.artifacts import SourceFrames

    con = query.connect(out)
    truth = ground_truth(con, rec1, rec2)
    encoder = load_encoder()
    manifests = {m.recording_id: m for m in query.manifests(out)}
    described = {}
    for rec, half in ((rec1, 0), (rec2, 1)):
        def rows(table):
            return con.execute(f"SELECT * FROM {table} WHERE recording_id = ?", [rec]).to_arrow_table()

        tracks = rows("tracks")
        points = rows("track_points")
        spans = {t["track_id"]: (t["first_s"] + t["last_s"]) / 2 for t in tracks.to_pylist()}
        views = choose_views(tracks, rows("detections"), points, per_track=50)
        views = {tid: [v for v in vs if (v.pts_s < spans[tid]) == (half == 0)][:5] for tid, vs in views.items()}
        with SourceFrames(manifests[rec].source, manifests[rec].probe, None) as fetch:
            table = describe_tracks(rec, views, fetch, encoder)
        described[rec] = {tid: np.array(d) for tid, d in zip(table["track_id"].to_pylist(), table["descriptor"].to_pylist())}
    ranks, margins = [], []
    pairs = [(rec1, t1, rec2, t2) for t1, t2 in truth.items()] + [(rec2, t2, rec1, t1) for t1, t2 in truth.items()]
    for rec, track, other, match in pairs:
        if track not in described[rec] or match not in described[other]:
            ranks.append(None)
            continue
        sims = {tid: float(described[rec][track] @ d) for tid, d in described[other].items()}
        order = sorted(sims, key=lambda tid: -sims[tid])
        ranks.append(order.index(match) + 1)
        margins.append(round(sims[match] - max(s for tid, s in sims.items() if tid != match), 4))
    return _summary(ranks, margins, con, rec1, rec2)


def _summary(ranks: list, margins: list, con, rec1: str, rec2: str) -> dict:
    sizes = [con.execute("SELECT count(*) FROM track_appearance WHERE recording_id = ?", [r]).fetchone()[0] for r in (rec1, rec2)]
    found = [r for r in ranks if r is not None]
    return {
        "queries": len(ranks),
        "tracks_per_camera": sizes,
        "top1": round(sum(r == 1 for r in found) / len(ranks), 3) if ranks else None,
        "top3": round(sum(r <= 3 for r in found) / len(ranks), 3) if ranks else None,
        "chance_top1": round(1 / min(sizes), 3) if min(sizes) else None,
        "chance_top3": round(min(3, min(sizes)) / min(sizes), 3) if min(sizes) else None,
        "ranks": ranks,
        "margins": margins,  # true match's similarity minus the best wrong one's (> 0: ranked first)
    }


def build_and_process(work: Path, seconds: float, sample_fps: float) -> tuple[str, str, str]:
    """Both cameras processed into one output; returns (output URI, camera-1 id, camera-2 id)."""
    from vigil.cli import main as vigil

    from vigil.uri import file_uri

    work.mkdir(parents=True, exist_ok=True)
    cam1 = make_first_camera(FOOTAGE, work / "cam1.mp4", seconds)
    cam2 = make_second_camera(FOOTAGE, work / "cam2.mp4", seconds - OFFSET_S)
    out = file_uri(work / "out")
    common = ["--out", out, "--sample-fps", str(sample_fps), "--shard-seconds", "600"]
    for cam, start in ((cam1, START_1), (cam2, START_1 + CLOCK_SKEW)):
        code = vigil(["process", file_uri(cam), *common, "--recording-start", start.isoformat()])
        if code != 0:
            raise SystemExit(f"vigil process {cam} failed ({code})")
    from vigil.review import query

    ids = {m.source.uri: m.recording_id for m in query.manifests(out)}
    return out, ids[file_uri(cam1)], ids[file_uri(cam2)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=139.4, help="length of camera 1 (camera 2: OFFSET_S less)")
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache" / "appearance")
    args = parser.parse_args()
    import shutil

    shutil.rmtree(args.work, ignore_errors=True)
    began = time.monotonic()
    out, rec1, rec2 = build_and_process(args.work, args.seconds, args.sample_fps)
    result = {"same_instants": evaluate(out, rec1, rec2), "other_moments": evaluate_other_moments(out, rec1, rec2)}
    result.update(seconds=args.seconds, sample_fps=args.sample_fps, wall_s=round(time.monotonic() - began, 1),
                  cpu=_cpu(), python=platform.python_version())  # fmt: skip
    print(json.dumps(result, indent=1, default=str))
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
