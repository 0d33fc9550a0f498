"""Damaged data never passes for something else: a frame analysed after damage is the picture the
undamaged file holds at that time, with the index the probe gave it, a picture the decoder could
only conceal is not analysed, and frames lost with damaged bytes are ``undecodable``, never a gap
(``no_frame``), while a recorder's pause or a glued segment join stays what it is."""

import random
from pathlib import Path

import pytest

from vigil.config import ProcessParams
from vigil.media.frames import keyframes_between, sampled_frames
from vigil.media.probe import probe
from vigil.media.sharding import plan_shards
from vigil.media.ts_packets import between

import corpus


def _entries(path: Path, sample_fps: float, shard_seconds: int):
    with open(path, "rb") as handle:
        described = probe(handle, str(path))
    found = []
    for shard in plan_shards(described, ProcessParams(sample_fps=sample_fps, shard_seconds=shard_seconds)):
        with open(path, "rb") as handle:
            keyframes = keyframes_between(described, shard.anchor_pts, shard.end)
            found += list(sampled_frames(handle, str(path), described, shard, sample_fps, keyframes))
    return described, found


def _pictures(path: Path) -> dict[int, int]:
    """pts -> pixel checksum of every frame of an undamaged file."""
    import av

    with av.open(str(path)) as container:
        return {f.pts: int(f.to_ndarray(format="bgr24").astype("int64").sum()) for f in container.decode(video=0)}


def _demuxed_ranks(path: Path) -> dict[int, int]:
    """pts -> position in presentation order among the video packets a demuxer finds."""
    import av

    with av.open(str(path)) as container:
        times = sorted(p.pts for p in container.demux(video=0) if p.pts is not None and p.size)
    return {pts: i for i, pts in enumerate(times)}


@pytest.mark.parametrize("seed", [3, 7, 11])
@pytest.mark.parametrize("form", ["mpegts", "matroska", "mp4"])
def test_after_damage_every_analysed_frame_is_the_picture_and_index_it_claims(footage, tmp_path, form, seed):
    clean = corpus.b_frames_odd_gop(footage, tmp_path / "clean.mp4")  # 10 fps: two frames in every 5-fps bin
    if form != "mp4":
        clean = corpus.remux(clean, tmp_path / f"clean.{form}", format=form)
    damaged = corpus.corrupted_middle(clean, tmp_path / f"damaged.{form}", length=30_000, seed=seed)
    pictures, ranks = _pictures(clean), _demuxed_ranks(damaged)
    described, entries = _entries(damaged, 5.0, 4)

    analysed = [e for e in entries if e.status == "ok"]
    assert len(analysed) >= 60, f"{len(analysed)} of {len(entries)} bins analysed"
    assert not described.discontinuities  # so timeline pts are the container's
    for entry in analysed:
        where = f"{float(entry.seconds):.1f} s"
        assert entry.frame_index == ranks[entry.pts], f"{where}: index {entry.frame_index}, demuxed {ranks[entry.pts]}"
        assert int(entry.image.astype("int64").sum()) == pictures[entry.pts], f"{where}: not the picture there"
    assert len(analysed) < len(entries), "the damage shows"
    if form == "mp4":  # its index lists every frame: a bin whose frames do not decode is never "empty"
        assert [e for e in entries if e.status == "no_frame"] == []


@pytest.mark.parametrize("form", ["mpegts", "mp4"])
def test_what_damage_costs_does_not_depend_on_shard_length(footage, tmp_path, form):
    clean = corpus.b_pyramid(footage, tmp_path / "clean.mp4", open_gop=True)
    if form != "mp4":
        clean = corpus.remux(clean, tmp_path / f"clean.{form}", format=form)
    damaged = corpus.corrupted_middle(clean, tmp_path / f"damaged.{form}", length=30_000, seed=3)

    def outcome(shard_seconds):
        return sorted((float(e.seconds), e.status, e.frame_index) for e in _entries(damaged, 5.0, shard_seconds)[1])

    whole = outcome(600)
    assert any(status != "ok" for _, status, _ in whole)
    assert outcome(4) == whole


def _damaged_copy(clean: Path, target: Path, kind: str, seed: int, within: tuple[float, float] = (0.15, 0.85)) -> Path:
    """``clean`` with bytes overwritten (random, zeroed), cut out, or whole 188-byte transport packets
    dropped (a lossy capture), at a random place within ``within`` of the file."""
    rng = random.Random(seed)
    data = bytearray(clean.read_bytes())
    at = rng.randrange(int(len(data) * within[0]), int(len(data) * within[1]))
    length = rng.choice([5_000, 30_000, 100_000])
    if kind == "random":
        data[at : at + length] = bytes(rng.randrange(256) for _ in range(length))
    elif kind == "zeroed":
        data[at : at + length] = bytes(length)
    elif kind == "cut":
        del data[at : at + length]
    else:  # dropped packets
        at, length = at - at % 188, length - length % 188
        del data[at : at + length]
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ["random", "zeroed", "cut", "dropped"])
@pytest.mark.parametrize("form", ["mpegts", "mpegts+audio", "matroska"])
def test_frames_lost_with_damaged_bytes_are_undecodable_never_a_gap(footage, tmp_path, form, kind, seed):
    """A demuxer reading front to back skips damaged bytes, and the frames in them leave no packet:
    the recording has no gap, so no bin may read ``no_frame``; where frames were lost the probe
    says so, and what is analysed is the undamaged picture."""
    if kind == "dropped" and form == "matroska":
        pytest.skip("transport packets are MPEG-TS's")
    if form == "mpegts+audio":
        clean = corpus.with_audio(footage, tmp_path / "clean.ts")
    else:
        clean = corpus.b_frames_odd_gop(footage, tmp_path / "clean.mp4")
        clean = corpus.remux(clean, tmp_path / f"clean.{form}", format=form)
    damaged = _damaged_copy(clean, tmp_path / f"damaged{clean.suffix}", kind, seed)
    pictures = _pictures(clean)
    described, entries = _entries(damaged, 5.0, 4)

    assert [e for e in entries if e.status == "no_frame"] == []
    lost = len(pictures) - len(_demuxed_ranks(damaged))
    if lost > 0:
        assert described.damaged and "damaged" in " ".join(described.warnings)
        assert [e for e in entries if e.status == "undecodable"]
    for entry in entries:
        if entry.status == "ok":
            assert int(entry.image.astype("int64").sum()) == pictures[entry.pts], f"{float(entry.seconds)} s"


@pytest.mark.parametrize("source", ["plain", "b-frames"])
def test_a_pause_in_mpegts_with_audio_stays_a_gap_and_damage_beside_it_does_not(footage, tmp_path, source):
    """A motion recorder idle for 3 s inside one MPEG-TS file (counters running on, audio beside):
    not damage; random bytes in the minutes before it are, and do not turn the pause into damage."""
    if source == "b-frames":
        footage = corpus.b_frames_odd_gop(footage, tmp_path / "b.mp4")
    paused = corpus.with_audio(footage, tmp_path / "paused.ts", gap_s=3)
    described, entries = _entries(paused, 5.0, 4)
    assert described.damaged == () and described.discontinuities == ()
    gaps = [(float(e.seconds), float(e.until)) for e in entries if e.status == "no_frame"]
    assert [e for e in entries if e.status == "undecodable"] == []
    assert gaps and sum(b - a for a, b in gaps) == pytest.approx(3, abs=0.3)

    damaged = _damaged_copy(paused, tmp_path / "damaged.ts", "random", seed=2, within=(0.1, 0.3))
    described, entries = _entries(damaged, 5.0, 4)
    assert described.damaged
    assert [(float(e.seconds), float(e.until)) for e in entries if e.status == "no_frame"] == gaps


def test_transport_packets_between_two_video_packets_are_judged_by_sync_and_counter():
    def packet(pid: int, counter: int, start: bool = False, size: int = 188) -> bytes:
        header = bytes([0x47, (0x40 if start else 0) | pid >> 8, pid & 0xFF, 0x10 | counter])
        return bytes(size - 188) + header + bytes(184)  # M2TS: a 4-byte time code first

    import io

    for size in (188, 192):

        def judged(packets: list[bytes]) -> str:
            data = b"".join(packets)  # FFmpeg gives a packet's position as its first byte's, time code included
            return between(io.BytesIO(data), 256, 0, len(data) - size)

        run = [packet(256, c % 16, start=c in (0, 19), size=size) for c in range(20)]  # two payloads
        audio = [packet(257, c, size=size) for c in range(3)]
        assert judged(run[:10] + audio + run[10:]) == "intact"
        assert judged(run + [packet(0, 0, True, size), packet(256, 0, start=True, size=size)]) == "restarted"
        assert judged(run[:10] + run[12:]) == "damaged"  # two video packets lost
        assert judged(run[:10] + [b"\x13" * size] + run[10:]) == "damaged"  # no sync byte
        assert judged(run[:-1] + [packet(256, 3, start=False, size=size)]) == "damaged"  # not a new payload


def test_damage_before_a_recorder_gap_does_not_turn_the_gap_into_damage(footage, tmp_path):
    """MKV whose clock jumps 600 s ahead (a motion recorder idle), random bytes in the group just
    before the jump: frames near the damage are undecodable, the idle time stays ``no_frame``."""
    import av

    clean = corpus.recorder_gap(footage, tmp_path / "gap.mkv", gap_s=600)
    with av.open(str(clean)) as container:
        stream = container.streams.video[0]
        at = next(p.pos for p in container.demux(stream) if p.pts is not None and p.pts * stream.time_base >= 5.1)
    data = bytearray(clean.read_bytes())
    rng = random.Random(5)
    data[at + 50 : at + 1050] = bytes(rng.randrange(256) for _ in range(1000))
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    described, entries = _entries(damaged, 1.0, 60)
    assert described.damaged
    idle = sum(float(e.until - e.seconds) for e in entries if e.status == "no_frame")
    assert idle > 550, f"only {idle:.0f} s of the 600-s gap reads no_frame"


def test_a_cut_that_leaves_the_counters_in_step_is_caught_by_packet_positions(footage, tmp_path):
    """5,000 bytes cut near the end of an MPEG-TS with audio: FFmpeg resynchronises without a flag
    or an error, and frames decode wrong without a flag either; the video packets no longer lie a
    whole number of transport packets apart, which is damage."""
    clean = corpus.with_audio(footage, tmp_path / "clean.ts")
    damaged = _damaged_copy(clean, tmp_path / "damaged.ts", "cut", seed=2, within=(0.93, 0.99))
    pictures = _pictures(clean)
    described, entries = _entries(damaged, 5.0, 4)
    assert described.damaged
    for entry in entries:
        if entry.status == "ok":
            assert int(entry.image.astype("int64").sum()) == pictures[entry.pts], f"{float(entry.seconds)} s"


def test_a_damaged_gap_ends_where_the_next_gap_begins():
    """Two steps in the decode times before any keyframe (a motion recorder switching rates): the
    first, judged damaged, must not run on to the end of the recording."""
    from types import SimpleNamespace

    from vigil.media.damage import LostData

    lost = LostData(reorder=0, bytes_tell=True, min_gap=10)
    times = [0, 4, 8, 12, 40, 44, 48, 52, 200, 204, 208]  # gaps before 40 and before 200
    for n, t in enumerate(times):
        lost.packet(t, SimpleNamespace(pts=t, dts=t, pos=188 * n, is_keyframe=n == 0, is_corrupt=False), False)
    verdicts = {188 * 3: "damaged", 188 * 7: "intact"}  # judged from the packet before each gap
    spans = lost.finish(1000, lambda start, end: verdicts[start])
    assert spans == ((12, 53),)
