"""Damaged data never passes for something else: a frame analysed after damage is the picture the
undamaged file holds at that time, with the index the probe gave it, and a picture the decoder
could only conceal is not analysed.

Known limit: where a demuxer of a file read front to back (MPEG-TS, MKV) skips damaged bytes, the
frames in them leave no packet, and their bins read ``no_frame``; telling that from a recorder gap
needs the container's own structure (see the README, "Bad input")."""

from pathlib import Path

import pytest

from vigil.config import ProcessParams
from vigil.media.frames import keyframes_between, sampled_frames
from vigil.media.probe import probe
from vigil.media.sharding import plan_shards

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
