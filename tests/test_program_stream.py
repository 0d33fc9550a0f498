"""MPEG program streams (DVD-style recorders, FFmpeg's ``mpeg`` muxer) stamp only the first frame
that starts in each PES packet: small frames often carry no presentation time. Such frames cannot
be placed in time; the bins where they lie hold frames, so they are never ``no_frame``, a pause
beside them stays one, and every frame that is analysed is the picture at its time."""

import collections
from fractions import Fraction

import pytest

import corpus
from test_damaged_streams import _entries
from vigil.media.status import STATUS_NO_FRAME, STATUS_OK, STATUS_UNDECODABLE


def _source_pictures(path):
    """Pixel checksum of every frame of the clip a program stream was made from, in order."""
    import av

    with av.open(str(path)) as container:
        return [int(f.to_ndarray(format="bgr24").astype("int64").sum()) for f in container.decode(video=0)]


def _source_times(path):
    """Every frame's time in the clip, in seconds from its first (exact)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = sorted(p.pts * stream.time_base for p in container.demux(stream) if p.pts is not None)
    return [t - times[0] for t in times]


def _assert_pictures_at_their_times(entries, source, fps):
    """Every analysed frame is the source's picture at that time (``fps``: the source's constant rate)."""
    pictures = _source_pictures(source)
    for entry in entries:
        if entry.status == STATUS_OK:
            assert int(entry.image.astype("int64").sum()) == pictures[round(entry.seconds * fps)], f"{float(entry.seconds)} s"


def _outcome(found):
    return sorted((e.seconds, e.status, e.frame_index) for e in found)


def test_untimed_frames_are_accounted_for_and_timed_ones_are_the_pictures_at_their_time(footage, tmp_path):
    clean = corpus.b_frames_odd_gop(footage, tmp_path / "clean.mp4")  # 10 fps, B-frames: many small frames
    stream = corpus.program_stream(clean, tmp_path / "clean.mpg")
    described, entries = _entries(stream, 5.0, 600)

    assert described.untimed_frames > 0 and described.untimed
    assert "carry no presentation time" in " ".join(described.warnings)
    statuses = collections.Counter(e.status for e in entries)
    assert statuses[STATUS_NO_FRAME] == 0, "the recording has a frame in every bin"
    assert statuses[STATUS_OK] >= 50 and statuses[STATUS_UNDECODABLE] > 0
    assert statuses[STATUS_OK] + statuses[STATUS_UNDECODABLE] == 100  # 20 s at 5 fps: every bin accounted for
    # The muxer's parser gives one frame here the time of the next as well: neither is analysed.
    assert described.ambiguous_times and "none is analysed" in " ".join(described.warnings)
    _assert_pictures_at_their_times(entries, clean, 10)
    assert _outcome(_entries(stream, 5.0, 4)[1]) == _outcome(entries)  # the same whatever the shard length


def _planned_entries(path, sample_fps, shard_seconds, out):
    """Every shard's sampled frames as the pipeline decodes them: planned by ``planning.plan_all``,
    each task carried through its serialised form (as Airflow's XCom carries it)."""
    from vigil.config import ProcessParams, RunRequest
    from vigil.media.frames import sampled_frames
    from vigil.orchestration import planning
    from vigil.store.contracts import ShardTask
    from vigil.uri import file_uri

    params = ProcessParams(sample_fps=sample_fps, shard_seconds=shard_seconds)
    request = RunRequest(sources=(file_uri(str(path)),), out=file_uri(str(out)), params=params)
    planned = planning.plan_all(request, planning.discover(request))
    found = []
    for task in (ShardTask.from_dict(t.to_dict()) for t in planned["shards"]):
        with open(path, "rb") as handle:
            found += list(sampled_frames(handle, str(path), task.plan.probe, task.shard, sample_fps, list(task.keyframes)))
    return found


@pytest.mark.parametrize("fps, options, size", [(25, {"g": "25", "bf": "2"}, None),
                                                (30, {"g": "30", "bf": "3", "x264-params": "b-pyramid=normal"}, None),
                                                (25, {"g": "25", "bf": "2"}, (1280, 720))])  # fmt: skip
def test_short_shards_analyse_what_one_long_shard_does(footage, tmp_path, fps, options, size):
    """At 25 and 30 fps a keyframe's PES often begins with the previous frame's tail: a shard's byte
    seek starts a packet early and skips up to the keyframe's own packet, so that the parser gives
    the keyframe its time, as the probe saw it (before: 3-s shards of the 25-fps clip analysed 84
    bins, one long shard 94). At 720p the tail even carries the keyframe's byte offset. Shards are
    planned and serialised as the pipeline does it; at the full frame rate too, no bin that holds
    a frame reads ``no_frame`` (one given the next frame's time left its own bin so)."""
    frames = corpus._frames(footage, 20 * fps)
    if size:
        import cv2

        frames = (cv2.resize(image, size) for image in frames)
    clip = corpus.encode(frames, [i / fps for i in range(20 * fps)], tmp_path / "clip.mp4", options=options, rate=fps)
    stream = corpus.program_stream(clip, tmp_path / "clip.mpg")
    described, entries = _entries(stream, 5.0, 600)

    assert described.untimed_frames > 0
    statuses = collections.Counter(e.status for e in entries)
    assert statuses[STATUS_NO_FRAME] == 0 and statuses[STATUS_OK] >= 90
    _assert_pictures_at_their_times(entries, clip, fps)
    for shard_seconds in (2, 3):
        found = _planned_entries(stream, 5.0, shard_seconds, tmp_path / f"out-{shard_seconds}")
        assert _outcome(found) == _outcome(entries), f"{shard_seconds}-s shards"
    every_frame = _entries(stream, float(fps), 600)[1]
    times = _source_times(clip)
    for gap in (e for e in every_frame if e.status == STATUS_NO_FRAME):  # the clip's millisecond times jitter
        assert not [float(t) for t in times if gap.seconds <= t < gap.until], f"no_frame at {float(gap.seconds)} s"
    _assert_pictures_at_their_times(every_frame, clip, fps)


@pytest.mark.parametrize("gap_s", [12, 30])
def test_a_pause_beside_untimed_frames_stays_a_pause(footage, tmp_path, gap_s):
    """A motion recorder idle for ``gap_s`` after 6 s of a B-frame clip, in a program stream: one
    ``no_frame`` row, short of the pause by at most the 2-s reordering bound (and a step) at each end,
    where untimed frames could still be shown."""
    clean = corpus.b_frames_odd_gop(footage, tmp_path / "clean.mp4")  # closed groups
    stream = corpus.program_stream(_paused(clean, tmp_path / "paused-source.ts", 6, gap_s), tmp_path / "paused.mpg")
    described, entries = _entries(stream, 1.0, 600)

    assert described.untimed_frames > 0
    (pause,) = [e for e in entries if e.status == STATUS_NO_FRAME]
    last_before = max(e.seconds for e in entries if e.status == STATUS_OK and e.seconds < pause.seconds)
    first_after = min(e.seconds for e in entries if e.status == STATUS_OK and e.seconds > pause.seconds)
    assert first_after - last_before >= gap_s - 1  # the pause lies between these two analysed frames
    assert pause.seconds - last_before <= 3.5 and first_after - pause.until <= 3.5


def test_frames_shown_late_in_a_slower_stretch_are_never_a_gap(footage, tmp_path):
    """10 fps, then 2 fps for 8 s (a recorder slowing down), then 10 fps, with B-frames: an untimed
    B-frame decoded before the slow stretch is shown 1.6 s after it is decoded. Every bin that holds
    a frame is analysed or ``undecodable``. (Found by an independent audit.)"""
    times = [i / 10 for i in range(60)] + [6 + i / 2 for i in range(16)] + [14 + i / 10 for i in range(60)]
    clip = corpus.encode(corpus._frames(footage, len(times)), times, tmp_path / "slower.mp4", options={"g": "17", "bf": "2"})
    stream = corpus.program_stream(clip, tmp_path / "slower.mpg")
    described, entries = _entries(stream, 5.0, 600)

    assert described.untimed_frames > 0
    for gap in (e for e in entries if e.status == STATUS_NO_FRAME):
        held = [t for t in times if gap.seconds <= Fraction(t).limit_denominator(100) < gap.until]
        assert not held, f"no_frame {float(gap.seconds)}-{float(gap.until)} s holds frames at {held} s"


def _paused(source, target, at_s: float, gap_s: float):
    """``source`` with every packet from its first keyframe at or after ``at_s`` (in decode order)
    ``gap_s`` later: a recorder idle there. Packets are copied as they are."""
    import av

    with av.open(str(source)) as container, av.open(str(target), "w", format="mpegts") as output:
        stream = container.streams.video[0]
        out_stream = output.add_stream_from_template(stream)
        shift, shifting = int(round(gap_s / stream.time_base)), False
        for packet in container.demux(stream):
            if packet.dts is None:
                continue
            shifting = shifting or (packet.is_keyframe and packet.pts * stream.time_base >= at_s)
            if shifting:
                packet.pts += shift
                packet.dts += shift
            packet.stream = out_stream
            output.mux(packet)
    return target


def test_untimed_frames_across_a_pause_mark_its_two_ends_not_the_pause():
    """Two untimed frames between a timed packet at 200 and one at 10,000 (frame step 100): they
    lie within three steps after the first or before the second, never in the pause."""
    from vigil.media.packet_scan import UntimedFrames

    untimed = UntimedFrames()
    for tick in (0, 100, 200):
        untimed.timed(tick, tick)
    untimed.packet()
    untimed.packet()
    untimed.timed(10_000, 10_000)
    untimed.packet()  # one more, between two packets a step apart: the whole hole
    untimed.timed(10_200, 10_200)
    assert untimed.count == 3
    assert untimed.finish(20_000) == ((200, 600), (9_700, 10_300))
