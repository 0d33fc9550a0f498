"""Pictures nothing refers to are left undecoded where they cannot be their bin's first frame
(``media.decode_plan.SkippedPictures``): the frames sampled, their indices and their pixels must
be exactly what decoding every packet gives, and a decoder that loses a picture must send the
shard back to decoding everything."""

from __future__ import annotations

import logging
from fractions import Fraction

import pytest

from test_probe_and_shards import _every_frame_then_first_per_bin, _sampled

from vigil.media import frames as frames_module
from vigil.media.decode_plan import SkippedPictures, SkipUnsafe


@pytest.fixture
def skips(monkeypatch):
    """Every SkippedPictures a test's shards make, to count what they left undecoded."""
    made = []

    class Recorded(SkippedPictures):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(frames_module, "SkippedPictures", Recorded)
    return made


def _corpus(footage, tmp_path, kind):
    from corpus import b_frames_odd_gop, b_pyramid

    path = tmp_path / f"{kind}.mp4"
    if kind.startswith("pyramid"):
        return b_pyramid(footage, path, open_gop=kind.endswith("open"))
    return b_frames_odd_gop(footage, path, open_gop=kind.endswith("open"))


@pytest.mark.parametrize("kind", ["two-b closed", "two-b open", "pyramid closed", "pyramid open"])
@pytest.mark.parametrize("sample_fps, shard_seconds", [(1.0, 600), (2.0, 3), (0.7, 10), (5.0, 7)])
def test_skipping_pictures_samples_exactly_the_frames_full_decoding_would(footage, tmp_path, skips, kind, sample_fps,
                                                                          shard_seconds):  # fmt: skip
    recording = _corpus(footage, tmp_path, kind)
    assert _sampled(recording, shard_seconds, sample_fps) == _every_frame_then_first_per_bin(recording, sample_fps)
    if sample_fps < 5:  # at 5 frames/s every other picture is sampled: little is left to skip
        assert sum(len(s.times) for s in skips) >= 20, [len(s.times) for s in skips]


def test_the_sample_footage_skips_most_pictures_between_sampled_ones(footage, skips):
    """The sample footage (keyframes on the 1-s grid) is sampled at 2 frames/s: each frame at
    x.5 s is reached through the B-frames before it, which need not be decoded."""
    assert len(_sampled(footage, 600, sample_fps=2.0)) == 279
    assert sum(len(s.times) for s in skips) > 200


def test_a_picture_lost_while_skipping_sends_the_shard_back_to_decoding_everything(footage, tmp_path, monkeypatch,
                                                                                   caplog):  # fmt: skip
    recording = _corpus(footage, tmp_path, "pyramid closed")
    expected = _every_frame_then_first_per_bin(recording, 1.0)
    calls, raised = [0], []
    came_out = SkippedPictures.came_out

    def loses_one(self, seconds):
        calls[0] += 1
        if self.times and calls[0] == 40 and not raised:  # as if the decoder had dropped a picture
            raised.append(seconds)
            raise SkipUnsafe("the picture at 4.000 s did not come out of the decoder")
        return came_out(self, seconds)

    monkeypatch.setattr(SkippedPictures, "came_out", loses_one)
    with caplog.at_level(logging.WARNING, logger="vigil.media.frames"):
        got = _sampled(recording, 600, 1.0)
    assert raised and "decoding it again without skipping" in caplog.text
    assert got == expected  # every bin once, none twice, the same frames and indices


@pytest.mark.parametrize("kind", ["two-b open", "pyramid closed"])
def test_a_decoder_holding_back_fewer_pictures_than_the_stream_reorders_stops_skipping(footage, tmp_path, monkeypatch,
                                                                                      caplog, kind):  # fmt: skip
    """FFmpeg guesses the reorder depth of a stream that does not state it: shown too few
    pictures, it may hold back too few and drop one. A decoder saying it holds back none must
    make the shard stop skipping (or decode again) before any picture is lost."""
    recording = _corpus(footage, tmp_path, kind)
    stopped = []

    class HoldsBackNone:
        def __init__(self, codec_context):
            self.codec_context = codec_context

        def __getattr__(self, name):
            return 0 if name == "reorder_depth" else getattr(self.codec_context, name)

    class Guessing(SkippedPictures):
        def __init__(self, codec_context, *args):
            super().__init__(codec_context, *args)
            self.codec_context = HoldsBackNone(codec_context)
            stopped.append(self)

    monkeypatch.setattr(frames_module, "SkippedPictures", Guessing)
    with caplog.at_level(logging.WARNING, logger="vigil.media.frames"):
        assert _sampled(recording, 7, 1.0) == _every_frame_then_first_per_bin(recording, 1.0)
    # Each shard stopped skipping, or was decoded again (its skipping instance then stays as it was).
    still_skipping = [s for s in stopped if s.disposable is not None]
    assert stopped and len(still_skipping) == caplog.text.count("decoding it again without skipping")


def test_damaged_recording_samples_the_same_frames_with_or_without_skipping(footage, tmp_path, monkeypatch):
    from corpus import corrupted_middle

    damaged = corrupted_middle(_corpus(footage, tmp_path, "pyramid closed"), tmp_path / "damaged.mp4", length=20_000)
    skipping = _entries(damaged)
    assert any(status != "ok" for *_, status in skipping)  # the damage shows: "undecodable" bins

    class Never(SkippedPictures):
        def __init__(self, codec_context, enabled, *args):
            super().__init__(codec_context, False, *args)

    monkeypatch.setattr(frames_module, "SkippedPictures", Never)
    assert skipping == _entries(damaged)


def _entries(path, sample_fps=1.0):
    """Every entry of every shard, with its status (damaged bins have no image)."""
    from test_probe_and_shards import _probe_of

    from vigil.config import ProcessParams
    from vigil.media.frames import keyframes_between, sampled_frames
    from vigil.media.sharding import plan_shards

    described, out = _probe_of(path), []
    for shard in plan_shards(described, ProcessParams(sample_fps=sample_fps, shard_seconds=7)):
        with open(path, "rb") as handle:
            for f in sampled_frames(handle, str(path), described, shard, sample_fps,
                                    keyframes_between(described, shard.anchor_pts, shard.end)):  # fmt: skip
                out.append((f.frame_index, f.pts, f.seconds, None if f.image is None else f.image.sum(), f.status))
    return out


class _Packet:
    def __init__(self, disposable: bool):
        self.disposable = disposable


class _Context:
    extradata, name, reorder_depth = b"", "h264", 1


def _skipped(anchor=Fraction(0)) -> SkippedPictures:
    skipped = SkippedPictures(_Context(), True, anchor, Fraction(1))
    skipped.disposable = lambda packet: packet.disposable
    return skipped


def test_only_pictures_that_cannot_be_a_bins_first_frame_are_skipped():
    s = _skipped()
    assert not s.skips(_Packet(False), Fraction(3, 10), needed_from=Fraction(1))  # a reference picture
    assert s.skips(_Packet(True), Fraction(5, 10), needed_from=Fraction(1))  # its bin is closed
    assert not s.skips(_Packet(True), Fraction(12, 10), needed_from=Fraction(1))  # may be bin 1's first
    assert s.skips(_Packet(True), Fraction(15, 10), needed_from=Fraction(1))  # 1.2 s, decoded, comes first
    assert not s.skips(_Packet(True), Fraction(11, 10), needed_from=Fraction(1))  # earlier than 1.2 s
    assert not s.skips(_Packet(True), None, needed_from=Fraction(1))  # no time: always decoded
    assert s.between(Fraction(3, 10), Fraction(11, 10)) == 1 and s.between(Fraction(11, 10), Fraction(2)) == 1


def test_a_decoded_picture_that_never_comes_out_is_noticed_only_once_pictures_are_skipped():
    s = _skipped()
    for t in (Fraction(1), Fraction(2), Fraction(3)):
        s.skips(_Packet(False), t, needed_from=Fraction(0))
    s.came_out(Fraction(2))  # 1 s never came out, but nothing was skipped: as without skipping
    s.skips(_Packet(True), Fraction(5, 2), needed_from=Fraction(3))
    s.skips(_Packet(False), Fraction(4), needed_from=Fraction(3))
    with pytest.raises(SkipUnsafe):
        s.came_out(Fraction(4))  # 3 s was decoded and is passed by 4 s
    with pytest.raises(SkipUnsafe):
        s.lost()


def test_a_picture_sent_that_the_drained_decoder_never_gave_back_is_noticed():
    s = _skipped()
    s.skips(_Packet(True), Fraction(1, 2), needed_from=Fraction(1))
    s.skips(_Packet(False), Fraction(3, 2), needed_from=Fraction(1))
    s.finish(end=Fraction(1))  # at or after the shard's end: not needed
    with pytest.raises(SkipUnsafe):
        s.finish(end=Fraction(2))
