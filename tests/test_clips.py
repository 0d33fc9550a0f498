"""Evidence clips: lossless, from the keyframe at or before the start, with a sealed record."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import S3_CONN_ID

pytestmark = pytest.mark.slow
FAST = ["--sample-fps", "0.5", "--shard-seconds", "60"]


def _vigil(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vigil.cli", *args], capture_output=True, text=True, env=dict(os.environ))


def _packets(data: bytes, lo_pts: int | None = None, count: int | None = None) -> list[tuple[int, bool, bytes]]:
    """(pts, keyframe, bytes) of every video packet, in decode order."""
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return [(p.pts, p.is_keyframe, bytes(p)) for p in container.demux(stream) if p.size]


def _decoded_frames(data: bytes) -> int:
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, footage):
    from vigil.uri import file_uri

    base = tmp_path_factory.mktemp("clips")
    source = base / "source" / "corridor.mp4"
    source.parent.mkdir()
    source.write_bytes(footage.read_bytes())
    out = base / "out"
    done = _vigil("process", file_uri(source), "--out", file_uri(out), *FAST,
                  "--recording-start", "2024-03-01T22:00:00Z")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return source, out


def test_a_clip_is_the_source_packets_from_the_keyframe_before_the_start(analysed):
    from vigil.uri import file_uri

    source, out = analysed
    done = _vigil("clip", file_uri(out), "corridor", "--from", "00:20.5", "--to", "31", "--pad", "1")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    clip = (out / record["clip_path"]).read_bytes()
    assert hashlib.sha256(clip).hexdigest() == record["clip_sha256"]
    assert record["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    # It starts at a keyframe at or before the padded start and covers the padded end.
    assert record["actual"]["start_s"] <= 19.5 < record["actual"]["start_s"] + 2
    assert record["actual"]["end_s"] >= 32.0
    assert record["requested"]["wall_start"].startswith("2024-03-01T22:00:20.5")
    # Lossless: the clip's packets are the source's, byte for byte, over the copied range.
    clip_packets = _packets(clip)
    assert clip_packets[0][1], "a clip starts with a keyframe"
    source_packets = _packets(source.read_bytes())
    first = next(i for i, p in enumerate(source_packets) if p[0] == record["copied"]["first_pts"] and p[1])
    expected = source_packets[first : first + record["copied"]["packets"]]
    assert [p[2] for p in clip_packets] == [p[2] for p in expected]
    assert _decoded_frames(clip) == len(clip_packets), "every frame of the clip decodes"
    lo, hi = record["copied"]["byte_start"], record["copied"]["byte_end"]
    assert all(payload in source.read_bytes()[lo:hi] for _, _, payload in clip_packets[:5])


def test_verify_covers_clips_and_names_an_altered_one(analysed, tmp_path):
    import shutil

    from vigil.uri import file_uri

    _, out = analysed
    assert _vigil("clip", file_uri(out), "corridor", "--from", "5", "--to", "8").returncode == 0
    done = _vigil("verify", file_uri(out))
    assert done.returncode == 0, done.stdout
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    clip = next((copy / "clips").rglob("*.mp4"))
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0xFF
    clip.write_bytes(bytes(data))
    done = _vigil("verify", file_uri(copy))
    assert done.returncode == 1 and clip.name in done.stdout


def test_a_clip_past_the_end_or_backwards_is_refused(analysed):
    from vigil.uri import file_uri

    _, out = analysed
    done = _vigil("clip", file_uri(out), "corridor", "--from", "9999", "--to", "10000")
    assert done.returncode == 2 and "past the end" in done.stderr
    done = _vigil("clip", file_uri(out), "corridor", "--from", "10", "--to", "5")
    assert done.returncode == 2 and "--from" in done.stderr


def test_a_clip_from_s3_uses_ranged_reads_and_matches_the_source_packets(s3_storage, footage, tmp_path):
    from vigil.review.clips import make_clip
    from vigil.uri import file_uri

    source_uri = f"s3://{s3_storage.buckets['source']}/drop/cam2.mp4"
    s3_storage.write_bytes(source_uri, footage.read_bytes())
    out = tmp_path / "out"
    done = _vigil("process", source_uri, "--out", file_uri(out), *FAST, "--conn-id", S3_CONN_ID)
    assert done.returncode == 0, done.stderr
    record = make_clip(file_uri(out), "cam2", 40.0, 44.0, source_conn_id=S3_CONN_ID)
    clip = (out / record.clip_path).read_bytes()
    source_packets = _packets(footage.read_bytes())
    first = next(i for i, p in enumerate(source_packets) if p[0] == record.copied["first_pts"] and p[1])
    assert [p[2] for p in _packets(clip)] == [p[2] for p in source_packets[first : first + record.copied["packets"]]]
    assert record.copied["byte_end"] - record.copied["byte_start"] < footage.stat().st_size / 4


def test_clips_requested_in_the_run_are_cut_for_every_interval_and_event_and_linked(footage, tmp_path):
    import re

    from vigil.review.query import connect
    from vigil.uri import file_uri

    source = tmp_path / "source" / "corridor.mp4"
    source.parent.mkdir()
    source.write_bytes(footage.read_bytes())
    out = tmp_path / "out"
    done = _vigil("process", file_uri(source), "--out", file_uri(out), *FAST, "--clips")
    assert done.returncode == 0, done.stderr
    intervals = connect(file_uri(out)).execute("SELECT count(*) FROM presence").fetchone()[0]
    records = [json.loads(p.read_text()) for p in (out / "clips").rglob("*.json")]
    assert intervals and len(records) == intervals  # the sample holds presence, no posture event at this rate
    report = next(out.rglob("report.html"))
    links = re.findall(r'<a href="([^"]+\.mp4)">', report.read_text())
    assert len(links) == intervals
    assert all((report.parent / link).resolve().is_file() for link in links), "links resolve from the report"
    assert _vigil("verify", file_uri(out)).returncode == 0


def test_a_clip_of_glued_segments_comes_from_the_right_segment(footage, tmp_path):
    """Two TS segments glued byte-wise (the second's clock restarts at 0): recording time 70 s lies
    in the second segment, whose raw clock says 10 s. The clip must show those frames."""
    import av
    import numpy as np

    import corpus
    from vigil.review.clips import make_clip
    from vigil.uri import file_uri

    (tmp_path / "source").mkdir()
    glued = corpus.glued_segments(footage, tmp_path / "source" / "glued.ts")
    out = tmp_path / "out"
    done = _vigil("process", file_uri(glued), "--out", file_uri(out), *FAST)
    assert done.returncode == 0, done.stderr
    record = make_clip(file_uri(out), "glued", 70.0, 74.0)
    assert 60.0 < record.actual["start_s"] <= 70.0 and record.actual["end_s"] >= 74.0

    def frames(data: bytes, lo: float | None = None, hi: float | None = None) -> list:
        import io

        with av.open(io.BytesIO(data)) as container:
            return [f.to_ndarray(format="gray") for f in container.decode(video=0)
                    if lo is None or lo - 1e-3 <= f.time < hi - 1e-3]  # fmt: skip

    clip = frames((out / record.clip_path).read_bytes())
    expected = frames(footage.read_bytes(), record.actual["start_s"], record.actual["end_s"])
    assert len(clip) == len(expected) > 0
    assert all(np.array_equal(a, b) for a, b in zip(clip, expected)), "the second segment's pictures, bit-exact"
