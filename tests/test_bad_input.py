"""A corpus of broken and unusual recordings, each with a defined outcome (see tests/corpus.py)."""

from __future__ import annotations

import pytest

import corpus
from vigil.errors import RecordingError
from vigil.uri import file_uri

pytestmark = pytest.mark.slow


def _process(path, out, sample_fps=1.0, shard_seconds=30):
    """Plan, analyse and finalize one recording; return its manifest and frames rows."""
    from vigil.orchestration import pipeline, planning
    from vigil.review import query
    from vigil.orchestration.finalize import finalize
    from vigil.config import ProcessParams, RunRequest

    request = RunRequest(
        sources=(file_uri(path),), out=file_uri(out), params=ProcessParams(sample_fps=sample_fps, shard_seconds=shard_seconds)
    )
    planned = planning.plan_all(request, planning.discover(request))
    if planned["failed"]:
        return planned["failed"], None, None
    finalize([pipeline.detect_shard(task) for task in planned["shards"]])
    (manifest,) = query.manifests(file_uri(out))
    db = query.connect(file_uri(out))
    frames = db.execute("SELECT pts_s, frame_index, status FROM frames ORDER BY pts_s").fetchall()
    return None, manifest, frames


def test_truncated_recording_is_analysed_as_far_as_it_goes_and_says_so(tmp_path, footage):
    failed, manifest, frames = _process(corpus.truncated(footage, tmp_path / "cut.mp4"), tmp_path / "out")
    assert failed is None
    assert 60 < manifest.duration_s < 70  # the readable half of 139.4 s
    assert any("truncated" in w for w in manifest.warnings)
    assert manifest.coverage == [[0.0, manifest.duration_s, "ok"]]


def test_corrupted_middle_is_recorded_as_undecodable_and_the_rest_analysed(tmp_path, footage):
    failed, manifest, frames = _process(corpus.corrupted_middle(footage, tmp_path / "bad.mp4"), tmp_path / "out")
    assert failed is None
    statuses = [status for *_, status in manifest.coverage]
    assert statuses == ["ok", "undecodable", "ok"], manifest.coverage
    bad_start, bad_end, _ = manifest.coverage[1]
    assert 0 < bad_end - bad_start < 20
    undecodable = [f for f in frames if f[2] == "undecodable"]
    assert undecodable and all(f[1] is None for f in undecodable)
    assert len(frames) == 140, "one row per sampling bin, analysed or not"


def test_variable_frame_rate_uses_timestamps_and_marks_the_recorder_gap(tmp_path, footage):
    failed, manifest, frames = _process(corpus.variable_frame_rate(footage, tmp_path / "vfr.mp4"), tmp_path / "out", 2.0)
    assert failed is None
    ok = [(pts, index) for pts, index, status in frames if status == "ok"]
    assert ok[:4] == [(0.0, 0), (0.5, 5), (1.0, 10), (1.5, 15)]
    assert ok[4:7] == [(7.0, 20), (7.5, 22), (8.0, 24)]  # 4 fps after the gap: timestamps, not index / fps
    gap = [pts for pts, _, status in frames if status == "no_frame"]
    assert gap == [2.0]  # one row for the whole gap of 10 bins: 2.0 s up to its until_s, 7.0 s
    from vigil.review import query

    until = query.connect(file_uri(tmp_path / "out")).execute("SELECT until_s FROM frames WHERE status = 'no_frame'").fetchall()
    assert until == [(7.0,)]
    assert [c[2] for c in manifest.coverage] == ["ok", "no_frame", "ok"]


def test_rotation_metadata_is_recorded(tmp_path, footage):
    failed, manifest, frames = _process(corpus.rotated(footage, tmp_path / "rot.mp4"), tmp_path / "out")
    assert failed is None
    assert any("display rotation applied" in w and "90°" in w for w in manifest.warnings)
    assert [f[2] for f in frames] == ["ok", "ok"]


def test_absurd_dimensions_are_refused_at_probe_time(tmp_path):
    failed, _, _ = _process(corpus.huge_dimensions(tmp_path / "huge.mp4"), tmp_path / "out")
    assert len(failed) == 1 and "exceeds the 4096×4096 pixel limit" in failed[0]["error"]
    assert "huge.mp4" in failed[0]["uri"]
    assert not (tmp_path / "out").exists()


def test_recording_errors_say_a_retry_cannot_help():
    assert RecordingError("s3://b/x.mp4", "no video stream").retryable is False
