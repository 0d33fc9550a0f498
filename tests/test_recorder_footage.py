"""Real recorder footage (issue #11): MPEG-TS without an index, clocks that reset, wrap and jump,
damaged copies, raw elementary streams, resource bombs. Every file is built from the sample footage."""

from __future__ import annotations

from fractions import Fraction

import pytest

import corpus
from test_probe_and_shards import _probe_of, _sampled
from vigil.config import ProcessParams
from vigil.errors import RecordingError
from vigil.media.frames import keyframes_between, sampled_frames
from vigil.media.sharding import plan_shards
from vigil.media.status import STATUS_NO_FRAME, STATUS_OK, STATUS_UNDECODABLE


@pytest.fixture(scope="module")
def reference(footage):
    """The MP4's sampled frames at 1 fps, as (frame index, pixel sum): what every remux must give."""
    return [(index, total) for index, _, total in _sampled(footage, 600, 1.0)]


def _same_pictures(path, shard_seconds):
    return [(index, total) for index, _, total in _sampled(path, shard_seconds, 1.0)]


@pytest.mark.parametrize("shard_seconds", [7, 60])
def test_mpeg_ts_shards_start_at_a_real_keyframe(footage, tmp_path, reference, shard_seconds):
    """No index, clock 10 h in, B-frames (the footage has them): any shard length samples the
    very frames the MP4 gives, none lost at a shard start."""
    ts = corpus.remux(footage, tmp_path / "offset.ts", offset_s=36000)
    assert _probe_of(ts).byte_seek
    assert _same_pictures(ts, shard_seconds) == reference


@pytest.mark.parametrize("open_gop", [False, True])
def test_mpeg_ts_with_b_frames_and_odd_groups_is_shard_invariant(footage, tmp_path, open_gop):
    recording = corpus.b_frames_odd_gop(footage, tmp_path / "b.mp4", open_gop)
    ts = corpus.remux(recording, tmp_path / "b.ts", offset_s=1234.5)
    whole = _sampled(ts, 600, 2.0)
    assert len(whole) == 40
    assert _sampled(ts, 3, 2.0) == whole
    assert [(i, s) for i, _, s in whole] == [(i, s) for i, _, s in _sampled(recording, 600, 2.0)]


def test_glued_segments_are_placed_one_after_the_other(footage, tmp_path, reference):
    """The second segment's clock restarts near 0: both segments are analysed, in file order."""
    glued = corpus.glued_segments(footage, tmp_path / "glued.ts")
    described = _probe_of(glued)
    assert described.frame_count == 1394
    assert abs(float(described.duration) - 139.4) < 0.2
    (reset,) = described.discontinuities
    assert reset.kind == "reset" and abs(reset.at_s - 60) < 0.2 and reset.jump_s < -35000
    second_file = (tmp_path / "glued.a.ts").stat().st_size
    assert second_file <= reset.byte_pos < second_file + 4 * 188  # its first video packet, after PAT/PMT
    assert any("jumps back" in w for w in described.warnings)
    for shard_seconds in (600, 7, 60):
        assert _same_pictures(glued, shard_seconds) == reference


def test_a_wrapping_33_bit_clock_is_continuous(footage, tmp_path, reference):
    wrapped = corpus.wrapping_clock(footage, tmp_path / "wrap.ts", before_wrap_s=30)
    described = _probe_of(wrapped)
    assert abs(float(described.duration) - 139.4) < 0.2
    assert [d.kind for d in described.discontinuities] == ["wrap"]
    assert 29 < described.discontinuities[0].at_s < 31
    assert _same_pictures(wrapped, 600) == reference
    assert _same_pictures(wrapped, 7) == reference


@pytest.mark.parametrize("before_wrap_s", [7.31, 7.35, 7.42])
def test_every_frame_around_a_clock_wrap_amid_b_frames_is_analysed(footage, tmp_path, before_wrap_s):
    """B-frames decoded after the wrap but shown before it (or the other way round) are not lost:
    sampling every frame of a 10-fps recording gives the MP4's frames, whatever the shard length."""
    recording = corpus.b_frames_odd_gop(footage, tmp_path / "b.mp4")
    wrapped = corpus.wrapping_clock(recording, tmp_path / "wrap.ts", before_wrap_s=before_wrap_s)
    assert [d.kind for d in _probe_of(wrapped).discontinuities] == ["wrap"]
    expected = [(i, s) for i, _, s in _sampled(recording, 600, 10.0)]
    assert len(expected) == 200
    for shard_seconds in (600, 3):
        assert [(i, s) for i, _, s in _sampled(wrapped, shard_seconds, 10.0)] == expected


def test_a_forward_jump_stays_a_gap_in_one_row(footage, tmp_path):
    jumped = corpus.forward_jump(footage, tmp_path / "jump.ts", gap_s=100)
    described = _probe_of(jumped)
    (jump,) = described.discontinuities
    assert jump.kind == "forward_jump" and 99 < jump.jump_s < 101
    entries = []
    for shard_seconds in (600, 45):
        params = ProcessParams(sample_fps=1.0, shard_seconds=shard_seconds)
        found = []
        for shard in plan_shards(described, params):
            with open(jumped, "rb") as handle:
                frames = sampled_frames(handle, str(jumped), described, shard, 1.0,
                                        keyframes_between(described, shard.anchor_pts, shard.end))  # fmt: skip
                found += [(f.status, float(f.seconds), f.until and float(f.until)) for f in frames]
        entries.append(sorted(found))
    ok = [e for e in entries[0] if e[0] == STATUS_OK]
    gaps = [e for e in entries[0] if e[0] == STATUS_NO_FRAME]
    assert len(ok) == 60 and not [e for e in entries[0] if e[0] == STATUS_UNDECODABLE]
    assert len(gaps) == 1 and gaps[0][2] - gaps[0][1] == pytest.approx(100, abs=1)  # one entry for 100 bins
    assert [e for e in entries[1] if e[0] == STATUS_OK] == ok  # the same frames whatever the shard length


def test_damaged_frames_listed_in_the_index_are_undecodable_not_missing(footage, tmp_path):
    """2 MB of an MP4's media data zeroed: the frames are still in the index; they are damage, not a gap."""
    damaged = corpus.zeroed_media(footage, tmp_path / "zeroed.mp4")
    described = _probe_of(damaged)
    statuses = []
    for shard in plan_shards(described, ProcessParams(sample_fps=1.0, shard_seconds=60)):
        with open(damaged, "rb") as handle:
            statuses += [f.status for f in sampled_frames(handle, str(damaged), described, shard, 1.0,
                                                          keyframes_between(described, shard.anchor_pts, shard.end))]  # fmt: skip
    assert STATUS_NO_FRAME not in statuses
    assert statuses.count(STATUS_UNDECODABLE) >= 60  # 2 of 3.3 MB: well over half the recording
    assert len(statuses) == 140  # every bin accounted for, once


def _run(path, out, **params):
    """Plan, analyse and finalize through the pipeline; return the manifest(s) and the query connection."""
    from vigil.config import RunRequest
    from vigil.orchestration import pipeline, planning
    from vigil.orchestration.finalize import finalize
    from vigil.review import query
    from vigil.uri import file_uri

    request = RunRequest(sources=(file_uri(path),), out=file_uri(out), params=ProcessParams(**{"sample_fps": 1.0, **params}))
    planned = planning.plan_all(request, planning.discover(request))
    assert not planned["failed"], planned["failed"]
    finalize([pipeline.detect_shard(task) for task in planned["shards"]])
    return query.manifests(file_uri(out)), query.connect(file_uri(out))


@pytest.mark.slow
def test_mpeg_ts_detections_do_not_depend_on_shard_length(footage, tmp_path):
    ts = corpus.remux(footage, tmp_path / "cam.ts", offset_s=36000)
    found = {}
    for shard_seconds in (600, 60):
        (manifest,), db = _run(ts, tmp_path / f"out{shard_seconds}", shard_seconds=shard_seconds)
        assert [c[2] for c in manifest.coverage] == ["ok"]
        found[shard_seconds] = db.execute(
            "SELECT frame_index, pts_s, det_index, round(x1, 1), round(y1, 1), round(confidence, 3) FROM detections ORDER BY 2, 3"
        ).fetchall()
    assert found[600] and found[60] == found[600]


@pytest.mark.slow
def test_glued_segments_are_all_analysed_and_the_manifest_lists_the_reset(footage, tmp_path):
    glued = corpus.glued_segments(footage, tmp_path / "glued.ts")
    (manifest,), db = _run(glued, tmp_path / "out", shard_seconds=30)
    assert [c[2] for c in manifest.coverage] == ["ok"] and manifest.coverage[0][1] == pytest.approx(139.4, abs=0.2)
    assert db.execute("SELECT count(*) FROM frames WHERE status = 'ok'").fetchone() == (140,)
    (reset,) = manifest.probe["discontinuities"]  # the manifest lists every break
    assert reset["kind"] == "reset" and reset["at_s"] == pytest.approx(60, abs=0.2) and reset["byte_pos"] > 0
    assert any("jumps back" in w for w in manifest.warnings)


def test_a_clock_spanning_years_for_two_frames_is_refused_saying_what_to_do(tmp_path):
    bomb = corpus.far_apart_frames(tmp_path / "bomb.mkv")
    assert bomb.stat().st_size < 4096
    with pytest.raises(RecordingError, match=r"timestamps span .* for 2 frames.*re-export"):
        _probe_of(bomb)


def test_a_long_gap_costs_one_entry_not_one_per_bin(tmp_path):
    """Two frames 7000 s apart, sampled at 60 fps: 420,000 bins, accounted for by a few entries."""
    import time

    path = corpus.far_apart_frames(tmp_path / "sparse.mkv", apart_ms=7_000_000)
    described = _probe_of(path)
    began, entries = time.monotonic(), []
    for shard in plan_shards(described, ProcessParams(sample_fps=60, shard_seconds=600)):
        with open(path, "rb") as handle:
            entries += list(sampled_frames(handle, str(path), described, shard, 60.0,
                                           keyframes_between(described, shard.anchor_pts, shard.end)))  # fmt: skip
    assert time.monotonic() - began < 30
    assert [e.status for e in entries].count(STATUS_OK) == 2
    gaps = [e for e in entries if e.status == STATUS_NO_FRAME]
    assert len(gaps) <= 13  # one per shard at most (12 shards of 600 s), never one per bin
    covered = sum((e.until - e.seconds) * 60 for e in gaps) + 2  # bins: the gaps' plus the two frames'
    assert covered == pytest.approx(float(described.duration) * 60, abs=1)


def test_the_frame_size_cap_holds_for_decoded_frames_not_only_the_header(footage, tmp_path):
    path = corpus.growing_resolution(footage, tmp_path / "grow.ts")
    described = _probe_of(path)
    assert (described.width, described.height) == (64, 64)  # the header passes the cap
    (shard,) = plan_shards(described, ProcessParams(sample_fps=1.0, shard_seconds=600))
    with open(path, "rb") as handle:
        entries = list(sampled_frames(handle, str(path), described, shard, 1.0, described.keyframes))
    assert [e.status for e in entries] == [STATUS_OK, STATUS_OK, STATUS_UNDECODABLE]
    assert all(e.image.shape == (64, 64, 3) for e in entries if e.image is not None)


def test_a_raw_stream_needs_its_frame_rate_and_then_is_timed_by_it(footage, tmp_path, reference):
    raw = corpus.raw_annex_b(footage, tmp_path / "dump.h264", seconds=20)
    with pytest.raises(RecordingError, match=r"frame_rate.*--frame-rate"):
        _probe_of(raw)
    with open(raw, "rb") as handle:
        described = __import__("vigil.media.probe", fromlist=["probe"]).probe(handle, str(raw), frame_rate=10)
    assert described.synthesized_fps == 10 and described.frame_count == 200 and described.duration == 20
    assert any("synthesised at 10 fps" in w for w in described.warnings)
    for shard_seconds in (600, 7):
        found = []
        for shard in plan_shards(described, ProcessParams(sample_fps=1.0, shard_seconds=shard_seconds)):
            with open(raw, "rb") as handle:
                found += [(f.frame_index, int(f.image.sum())) for f in sampled_frames(
                    handle, str(raw), described, shard, 1.0, keyframes_between(described, shard.anchor_pts, shard.end))]  # fmt: skip
        assert found == reference[:20]  # the MP4's frames at the MP4's times: 10 fps was the truth


@pytest.mark.slow
def test_every_output_of_a_raw_stream_says_its_times_are_synthesised(footage, tmp_path):
    import pyarrow.parquet as pq

    from vigil.store.sink import read_provenance

    raw = corpus.raw_annex_b(footage, tmp_path / "dump.h264", seconds=20)
    (manifest,), db = _run(raw, tmp_path / "out", shard_seconds=10, frame_rate=10)
    assert any("synthesised at 10 fps" in w for w in manifest.warnings)
    assert manifest.duration_s == 20 and [c[2] for c in manifest.coverage] == ["ok"]
    files = sorted((tmp_path / "out").rglob("shard-*.parquet"))
    assert len(files) == 4
    for path in files:
        assert read_provenance(path.read_bytes())["stream"]["synthesized_fps"] == 10


def _discover(*sources):
    from vigil.config import RunRequest
    from vigil.orchestration import planning

    return [info.uri for info in planning.discover(RunRequest(sources=sources, out="file:///nonexistent/out"))]


def test_an_object_named_explicitly_is_taken_whatever_its_extension(footage, tmp_path):
    from vigil.uri import file_uri

    drop = tmp_path / "drop"
    drop.mkdir()
    renamed = drop / "exhibit-7.bin"
    renamed.write_bytes(footage.read_bytes())
    gif = corpus.animated_gif(footage, drop / "clip.gif")
    assert _discover(file_uri(renamed)) == [file_uri(renamed)]  # named: taken, FFmpeg decides
    assert _discover(file_uri(drop)) == [file_uri(gif)]  # listed: the extension filter applies
    described = _probe_of(gif)
    assert described.frame_count == 30 and described.duration == 3  # animated GIF is footage
    (shard,) = plan_shards(described, ProcessParams(sample_fps=1.0))
    with open(gif, "rb") as handle:
        assert [f.status for f in sampled_frames(handle, str(gif), described, shard, 1.0, described.keyframes)] == ["ok"] * 3


def test_an_unreadable_proprietary_file_says_what_to_do(tmp_path):
    dav = tmp_path / "ch01_20240301.dav"
    dav.write_bytes(b"DAHUA-like vendor header " + bytes(range(256)) * 40)
    with pytest.raises(RecordingError, match=r"DVR \.dav .*proprietary container\. Export the footage from the vendor's player"):
        _probe_of(dav)
    other = tmp_path / "notes.bin"
    other.write_bytes(b"not a video at all" * 100)
    with pytest.raises(RecordingError, match="not a readable media container"):
        _probe_of(other)


def test_process_exits_non_zero_when_nothing_was_analysed(tmp_path, capsys):
    from vigil.cli import main
    from vigil.uri import file_uri

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no recordings here")
    assert main(["process", file_uri(empty), "--out", file_uri(tmp_path / "out")]) != 0
    assert "nothing analysed" in capsys.readouterr().err


@pytest.mark.slow
def test_sideways_phone_footage_is_analysed_upright(footage, tmp_path):
    """Stored at 90/180/270 with the matching display flag: the same people as upright, in
    displayed-frame pixels, and no lying or hands-raised events from people walking."""
    results = {}
    for degrees in (0, 90, 180, 270):
        path = corpus.stored_sideways(footage, tmp_path / f"phone{degrees}.mp4", degrees)
        (manifest,), db = _run(path, tmp_path / f"out{degrees}", shard_seconds=20)
        assert manifest.probe["rotation"] == degrees
        persons = [row[0] for row in db.execute("SELECT persons FROM frames ORDER BY pts_s").fetchall()]
        width = db.execute("SELECT max(x2) FROM detections").fetchone()[0]
        events = db.execute("SELECT posture FROM pose_events WHERE posture IN ('lying', 'hands_raised')").fetchall()
        results[degrees] = (persons, width, events)
    upright_persons = results[0][0]
    assert sum(upright_persons) >= 20  # people are there to be found
    for degrees in (90, 180, 270):
        persons, width, events = results[degrees]
        agree = sum(a == b for a, b in zip(persons, upright_persons))
        assert len(persons) == len(upright_persons) and agree >= 0.9 * len(persons), (degrees, persons, upright_persons)
        assert width <= 768 + 1  # displayed frames are 768 wide; stored sideways ones are 432
        assert events == [], (degrees, events)
    assert results[90][1] > 432  # a box right of x = 432: only possible in displayed (upright) pixels


@pytest.mark.slow
def test_every_video_stream_is_a_recording_of_its_own(footage, tmp_path):
    from vigil.store.sink import read_provenance

    path = corpus.two_cameras(footage, tmp_path / "nvr-export.mkv")
    manifests, db = _run(path, tmp_path / "out", shard_seconds=20)
    by_stream = {m.probe["stream_index"]: m for m in manifests}
    assert sorted(by_stream) == [0, 1]
    first, camera = by_stream[0], by_stream[1]
    sha = first.source.sha256[:12]
    assert first.recording_id == f"nvr-export-{sha}"  # the first stream keeps the id it always had
    assert camera.recording_id == f"nvr-export-s1-{sha}"
    assert first.totals["detections"] == 0 and camera.totals["detections"] > 0  # the camera is found
    assert [c[2] for c in camera.coverage] == ["ok"] and camera.duration_s == pytest.approx(20, abs=0.2)
    files = sorted((tmp_path / "out" / "frames" / f"recording_id={camera.recording_id}").glob("*.parquet"))
    assert files
    for path in files:
        provenance = read_provenance(path.read_bytes())
        assert provenance["stream"]["stream_index"] == 1 and provenance["source"]["uri"].endswith("nvr-export.mkv")


def test_the_clock_places_resets_wraps_and_jumps_on_one_timeline():
    from vigil.media.timeline import Clock

    period, step = 1 << 33, 3600  # 90 kHz ticks, 25 fps
    clock = Clock(Fraction(1, 90000), wrap_bits=33)
    raw = [period - 2 * step, period - step, 0, step]  # a wrap: time goes on
    raw += [5 * step, 6 * step]
    raw += [100, 100 + step]  # a reset: the clock restarts
    raw += [period + 200 + step]  # FFmpeg's own wrap "correction" of a reset (+2^33): still continuous
    raw += [100 + 2 * step + 90000 * 60]  # a forward jump of a minute: kept
    placed = [clock.place(t, t) for t in raw]
    assert all(b > a for a, b in zip(placed, placed[1:]))  # monotonic, every frame its own time
    assert [kind for kind, _, _ in clock.events] == ["wrap", "reset", "forward_jump"]
    assert placed[2] - placed[1] == step and placed[6] - placed[5] == step  # continuous across wrap and reset
    assert placed[9] - placed[8] == 90000 * 60 + step - 100  # the forward gap stays a gap


def test_h264_with_b_frames_in_avi_fails_saying_its_times_are_decode_order(footage, tmp_path):
    """AVI stores no presentation times: frames would be placed by decode order. Never silently."""
    avi = corpus.h264_in_avi(footage, tmp_path / "dvr.avi")
    described = _probe_of(avi)
    with pytest.raises(RecordingError, match="not presentation times"):
        for shard in plan_shards(described, ProcessParams(sample_fps=10.0, shard_seconds=10)):
            with open(avi, "rb") as handle:
                list(sampled_frames(handle, str(avi), described, shard, 10.0,
                                    keyframes_between(described, shard.anchor_pts, shard.end)))  # fmt: skip
