from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from vigil.config import ProcessParams
from vigil.errors import RecordingError
from vigil.media.frames import DecodePlan, keyframes_between, sampled_frames
from vigil.media.probe import Keyframe, RecordingProbe, probe
from vigil.media.sharding import plan_shards, sample_bin
from vigil.store.s3_reader import S3RangeReader


def _probe_of(path):
    with open(path, "rb") as handle:
        return probe(handle, str(path))


def test_probe_reads_the_sample_footage_from_container_timestamps(footage):
    described = _probe_of(footage)
    assert described.frame_count == 1394
    assert described.duration == Fraction(697, 5)  # 139.4 s, exact
    assert len(described.keyframes) == 140
    assert (described.width, described.height, described.codec) == (768, 432, "h264")
    assert (described.keyframes[1].pts, described.keyframes[1].frame_index) == (200000, 10)


def _synthetic_probe(duration_s: int, keyframe_every_s: int = 1) -> RecordingProbe:
    fps = 10
    return RecordingProbe(
        container_format="mp4", codec="h264", width=64, height=64, time_base="1/1000",
        start_pts=0, end_pts=duration_s * 1000, frame_count=duration_s * fps,
        keyframes=tuple(Keyframe(k * 1000, k * fps) for k in range(0, duration_s, keyframe_every_s)),
    )  # fmt: skip


@pytest.mark.parametrize("duration, shard, expected", [(100, 30, 4), (90, 30, 3), (29, 30, 1), (1, 600, 1)])
def test_shards_tile_the_recording_half_open(duration, shard, expected):
    shards = plan_shards(_synthetic_probe(duration), ProcessParams(shard_seconds=shard))
    assert len(shards) == expected
    assert shards[0].start == 0 and shards[-1].end == duration
    for before, after in zip(shards, shards[1:]):
        assert before.end == after.start  # no gap, no overlap


def test_shard_anchor_is_the_keyframe_at_or_before_its_start():
    shards = plan_shards(_synthetic_probe(100, keyframe_every_s=7), ProcessParams(shard_seconds=30))
    assert [(s.anchor_pts, s.anchor_index) for s in shards] == [(0, 0), (28000, 280), (56000, 560), (84000, 840)]


def test_shard_end_pos_is_the_byte_position_of_the_first_keyframe_at_or_after_its_end():
    described = _synthetic_probe(100, keyframe_every_s=7)
    described = replace(described, keyframes=tuple(Keyframe(k.pts, k.frame_index, pos=1000 + k.pts)
                                                   for k in described.keyframes))  # fmt: skip
    shards = plan_shards(described, ProcessParams(shard_seconds=30))
    # keyframes every 7 s: the first at or after 30 s is at 35 s, after 60 s at 63 s, after 90 s at 91 s
    assert [s.end_pos for s in shards] == [36000, 64000, 92000, -1]  # the last shard reads to the end
    assert plan_shards(_synthetic_probe(100), ProcessParams(shard_seconds=30))[0].end_pos == -1  # no positions


@pytest.mark.parametrize(
    ("occupied", "first", "end", "expected"),
    [
        ([], 0, 5, [(0, 5)]),
        ([0, 1, 2, 3, 4], 0, 5, []),
        ([2, 2, 3, 7, 9], 0, 8, [(0, 2), (4, 7)]),  # repeats count once; a bin past the end is ignored
        ([3], 3, 10, [(4, 10)]),
    ],
)
def test_runs_without_are_the_half_open_gaps_between_occupied_bins(occupied, first, end, expected):
    from vigil.media.sharding import runs_without

    assert runs_without(occupied, first, end) == expected


def test_shard_length_grows_to_stay_within_the_mapping_limit():
    shards = plan_shards(_synthetic_probe(3000), ProcessParams(shard_seconds=1), max_shards=1024)
    assert len(shards) <= 1024
    assert shards[0].end == 3  # grown by a whole multiple: still whole sampling intervals
    assert shards[-1].end == 3000


def test_sample_bins_are_exact():
    assert sample_bin(Fraction(1, 2), 2) == 1
    assert sample_bin(Fraction(499999, 1000000), 2) == 0
    assert sample_bin(Fraction(10, 3), 0.3) == 1  # 0.3 is 3/10 exactly, not 0.29999…


def _sampled(path, shard_seconds, sample_fps=2.0):
    described = _probe_of(path)
    out = []
    for shard in plan_shards(described, ProcessParams(sample_fps=sample_fps, shard_seconds=shard_seconds)):
        keyframes = keyframes_between(described, shard.anchor_pts, shard.end)  # as the pipeline hands them
        with open(path, "rb") as handle:
            found = sampled_frames(handle, str(path), described, shard, sample_fps, keyframes)
            out += [(f.frame_index, f.pts, f.image.sum()) for f in found]
    return out


@pytest.mark.parametrize("shard_seconds", [7, 30])
def test_sampled_frames_do_not_depend_on_shard_length(footage, shard_seconds):
    whole = _sampled(footage, 600)
    assert len(whole) == 279  # 139.4 s at 2 fps: one frame per half-second bin
    assert _sampled(footage, shard_seconds) == whole


def test_sampled_frames_use_presentation_order_indices(footage):
    frames = _sampled(footage, 600, sample_fps=1.0)
    assert [index for index, _, _ in frames[:4]] == [0, 10, 20, 30]
    assert [pts for _, pts, _ in frames[:4]] == [0, 200000, 400000, 600000]


def _every_frame_then_first_per_bin(path, sample_fps):
    """The reference: decode every frame, index in presentation order, keep each bin's first."""
    import av

    from vigil.config import as_fraction

    described, chosen = _probe_of(path), {}
    with av.open(str(path)) as container:
        frames = sorted(container.decode(video=0), key=lambda f: f.pts)
        for index, frame in enumerate(frames):
            chosen.setdefault(sample_bin(described.seconds(frame.pts), sample_fps), (index, frame.pts, frame.to_ndarray(format="bgr24").sum()))
    return [chosen[b] for b in sorted(chosen)]


@pytest.mark.parametrize("groups", ["closed", "open", "intra"])
@pytest.mark.parametrize("sample_fps, shard_seconds", [(1.0, 600), (1.0, 7), (0.5, 6), (2.0, 3), (0.7, 10)])
def test_skipping_unneeded_packets_samples_exactly_the_frames_full_decoding_would(
    footage, tmp_path, sample_fps, shard_seconds, groups
):
    from corpus import all_intra, b_frames_odd_gop

    path = tmp_path / f"{groups}.mp4"
    recording = all_intra(footage, path) if groups == "intra" else b_frames_odd_gop(footage, path, groups == "open")
    assert _sampled(recording, shard_seconds, sample_fps) == _every_frame_then_first_per_bin(recording, sample_fps)


@pytest.mark.parametrize("encode", ["b_frames_odd_gop", "b_pyramid", "open_gop"])
@pytest.mark.parametrize("sample_fps, shard_seconds", [(1.0, 600), (2.0, 3), (5.0, 4)])
def test_a_file_trimmed_by_stream_copy_starts_at_the_first_frame_players_show(
    footage, tmp_path, encode, sample_fps, shard_seconds
):
    """Its edit list hides the pictures from the keyframe before the cut: they are decoded (the
    first shown frames refer to them) but are not frames of the recording. Time 0 and index 0 are
    the first frame shown; every bin matches decoding every frame; a warning says how many."""
    import av

    import corpus

    source = tmp_path / "source.mp4"
    if encode == "open_gop":
        corpus.b_frames_odd_gop(footage, source, open_gop=True)
    else:
        getattr(corpus, encode)(footage, source)
    trimmed = corpus.trimmed_by_stream_copy(source, tmp_path / "trimmed.mp4", cut_s=3.3)
    described = _probe_of(trimmed)
    with av.open(str(trimmed)) as container:
        shown = sorted(f.pts for f in container.decode(video=0))
    assert described.hidden_frames > 0 and described.frame_count == len(shown) and described.start_pts == shown[0] == 0
    assert any("edit list hides" in note for note in described.warnings)
    assert not any("truncated" in note for note in described.warnings)
    assert _sampled(trimmed, shard_seconds, sample_fps) == _every_frame_then_first_per_bin(trimmed, sample_fps)


@pytest.fixture
def plans(monkeypatch):
    """Every DecodePlan a test's shards make, to count what they decoded and skipped."""
    from vigil.media import frames as frames_module

    made = []

    class Recorded(frames_module.DecodePlan):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(frames_module, "DecodePlan", Recorded)
    return made


def test_in_an_all_intra_recording_only_sampled_pictures_are_decoded(footage, tmp_path, plans):
    from corpus import all_intra

    assert len(_sampled(all_intra(footage, tmp_path / "intra.mp4"), 600, sample_fps=1.0)) == 20
    # 200 pictures: the first groups until closed groups are shown, then about one a second.
    assert plans[0].skipped >= 170, (plans[0].decoded, plans[0].skipped)


def test_with_keyframes_on_the_sampling_grid_only_keyframes_are_decoded(footage, plans):
    assert len(_sampled(footage, 600, sample_fps=1.0)) == 140  # the footage has a keyframe every second
    # Decoded: the keyframes and the first group (skipping waits for a second keyframe to show
    # that groups are closed); the last keyframe takes the last bin, so the 3 pictures after it
    # are not even demuxed.
    assert plans[0].decoded == 140 + 9 and plans[0].skipped == 1394 - 140 - 9 - 3
    plans.clear()
    _sampled(footage, 600, sample_fps=2.0)  # every other sampled frame sits mid-group, and is known
    assert plans[0].skipped >= 130  # only when the decoder hands it out, a few frames later


def test_packets_left_undecoded_are_not_kept_waiting_for_a_frame(footage, plans, monkeypatch):
    """A declined packet never gives a frame: kept pending, every later frame searched past it
    (about 1,250 here, 0.4 ms a frame on a 600-s shard)."""
    from vigil.media import frames as frames_module

    deepest = [0]

    class Measured(frames_module.Placer):
        def frame(self, frame):
            deepest[0] = max(deepest[0], len(self.pending))
            return super().frame(frame)

    monkeypatch.setattr(frames_module, "Placer", Measured)
    assert len(_sampled(footage, 600, sample_fps=1.0)) == 140
    assert plans[0].skipped > 1200 and deepest[0] <= 16, deepest[0]


def test_decode_plan_keeps_decoding_until_a_keyframe_is_no_later_than_the_next_needed_frame():
    keyframes = [Fraction(0), Fraction(5, 2), Fraction(4), Fraction(6)]
    plan = DecodePlan(keyframes, needed_from=Fraction(0), sample_fps=Fraction(1), end=Fraction(10))
    assert plan.wants(True, Fraction(0)) and plan.wants(False, Fraction(1, 10))  # one group tells nothing yet
    plan.needed_from = Fraction(1)
    assert plan.wants(False, Fraction(2, 10))  # the first group is always decoded
    assert plan.wants(True, Fraction(5, 2))  # keyframes are always decoded; this one takes bin [2, 3)
    assert plan.wants(False, Fraction(26, 10))  # no leading picture: closed groups; 4 s is later than 3 s
    plan.needed_from = Fraction(4)  # the frame at 3 s came out and was sampled for bin [3, 4)
    assert not plan.wants(False, Fraction(3, 1))  # decoding can restart at the keyframe at 4 s
    assert plan.wants(True, Fraction(4)) and plan.wants(False, Fraction(41, 10))  # 6 s is later than 5 s
    assert plan.wants(False, None)  # a packet without a time is always decoded
    assert not plan.finished
    plan.needed_from = Fraction(10)  # every bin up to the shard's end is taken
    assert plan.finished
    assert not plan.wants(True, Fraction(6)) and not plan.wants(False, Fraction(61, 10))  # a whole group
    assert (plan.decoded, plan.skipped) == (8, 3)


def test_decode_plan_never_skips_in_open_groups():
    plan = DecodePlan([Fraction(0), Fraction(1), Fraction(2)], needed_from=Fraction(0), sample_fps=Fraction(2), end=Fraction(3))
    plan.wants(True, Fraction(0))
    plan.needed_from = Fraction(3)
    assert plan.wants(True, Fraction(1))
    assert plan.wants(False, Fraction(9, 10))  # a leading picture, earlier than its keyframe
    assert plan.open_groups and plan.wants(False, Fraction(11, 10)) and plan.skipped == 0


def test_concatenated_recording_keeps_indices_across_copies(long_recording):
    described = _probe_of(long_recording)
    assert described.frame_count == 3 * 1394
    assert described.duration == Fraction(3 * 697, 5)
    frames = _sampled(long_recording, 60, sample_fps=0.5)
    assert [i for i, _, _ in frames] == list(range(0, 3 * 1394, 20))


def test_a_shard_reads_only_its_part_of_an_s3_recording(s3_storage, long_recording):
    bucket = s3_storage.buckets["source"]
    uri = f"s3://{bucket}/cam/long.mp4"
    s3_storage.write_bytes(uri, long_recording.read_bytes())
    described = _probe_of(long_recording)
    middle = plan_shards(described, ProcessParams(shard_seconds=60))[3]
    reader = S3RangeReader(s3_storage.client, bucket, "cam/long.mp4", s3_storage.stat(uri))
    frames = list(sampled_frames(reader, uri, described, middle, 2.0))
    assert len(frames) == 120
    assert reader.bytes_fetched < 0.35 * described_size(long_recording), reader.bytes_fetched

    bounded = S3RangeReader(s3_storage.client, bucket, "cam/long.mp4", s3_storage.stat(uri))
    bounded.expect(middle.end_pos)  # what detect_shard does with the plan's byte range
    assert [f.frame_index for f in sampled_frames(bounded, uri, described, middle, 2.0)] == [f.frame_index for f in frames]
    assert bounded.bytes_fetched < reader.bytes_fetched, (bounded.bytes_fetched, reader.bytes_fetched)


def described_size(path):
    return path.stat().st_size


# ---------------------------------------------------------------------------- unreadable input


def _audio_only(path):
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 16000), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "not a readable media container"),
        (lambda p: p.write_text("this is a note, not a video\n" * 40), "not a readable media container"),
        (_audio_only, "no video stream"),
    ],
    ids=["zero-bytes", "text-named-mp4", "audio-only"],
)
def test_probe_refuses_unreadable_input_naming_it(tmp_path, make, message):
    path = tmp_path / "cam7.mp4"
    make(path)
    with pytest.raises(RecordingError, match=message) as caught:
        _probe_of(path)
    assert str(path) in str(caught.value)
    assert not caught.value.retryable


def test_an_mp4_cut_short_before_its_index_is_named_as_such(footage, tmp_path):
    """Recorders that lose power write no index (moov box at the end): say so and what can be done."""
    import av

    whole = tmp_path / "whole.mp4"
    with av.open(str(footage)) as src, av.open(str(whole), "w", format="mp4") as dst:  # index at the end
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    cut = tmp_path / "cam3.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    with pytest.raises(RecordingError, match="without its index") as caught:
        _probe_of(cut)
    assert "untrunc" in str(caught.value) and str(cut) in str(caught.value)


def test_a_run_needing_more_shards_than_airflow_can_map_is_planned_whole(tmp_path, footage):
    from vigil.orchestration import planning
    from vigil.config import RunRequest
    from vigil.uri import file_uri

    for name in ("cam1.mp4", "cam2.mp4"):
        (tmp_path / name).write_bytes(footage.read_bytes())
    request = RunRequest(sources=(file_uri(tmp_path),), out=file_uri(tmp_path.parent / "out"),
                         params=ProcessParams(shard_seconds=10))  # fmt: skip
    assert len(planning.plan_all(request, planning.discover(request), max_shards=28)["shards"]) == 28
    # No refusal past the map limit: Airflow maps shards in batches (orchestration/drop.py).
    assert len(planning.plan_all(request, planning.discover(request), max_shards=20)["shards"]) == 28


def test_decoder_choice_falls_back_to_the_cpu_only_when_asked_to_choose(monkeypatch):
    from vigil.media import decoders
    from vigil.config import ProcessParams
    from vigil.errors import ParameterError

    monkeypatch.setattr(decoders, "nvdec_problem", lambda gpu: "no NVIDIA driver")
    assert decoders.choose_decoder(ProcessParams()) == "cpu"
    assert decoders.choose_decoder(ProcessParams(device="cuda:1")) == "cpu"
    with pytest.raises(ParameterError, match="not available on cuda:1 \\(no NVIDIA driver\\)"):
        decoders.choose_decoder(ProcessParams(device="cuda:1", decoder="nvdec"))
    monkeypatch.setattr(decoders, "nvdec_problem", lambda gpu: None)
    auto = ProcessParams(device="cuda:1")  # GPU and host cores decode every other shard each
    assert [decoders.choose_decoder(auto, i) for i in range(4)] == ["nvdec:1", "cpu", "nvdec:1", "cpu"]
    assert decoders.choose_decoder(ProcessParams(device="cuda:1", decoder="nvdec"), 1) == "nvdec:1"
    assert decoders.choose_decoder(ProcessParams(device="cuda:1", decoder="cpu")) == "cpu"


def test_nvdec_is_reported_unavailable_here_with_a_reason():
    from vigil.media.decoders import nvdec_problem

    problem = nvdec_problem(0)
    if problem is None:
        pytest.skip("this machine has NVDEC")
    assert problem.strip() and problem != "None"  # a reason a person can act on, not a bare failure
