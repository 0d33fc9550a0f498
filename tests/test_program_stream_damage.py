"""Damaged MPEG program streams: FFmpeg's demuxer skips what it cannot parse without a word and the
decoder conceals most of what follows, so the probe checks the chain of packs as the demuxer reads
them (``media/ps_packs.py``). Where bytes were lost or overwritten, the times read ``undecodable``
and no concealed picture is analysed."""

import collections
import io
import random

import pytest

import corpus
from test_damaged_streams import _entries
from test_program_stream import _assert_pictures_at_their_times, _source_times
from vigil.media.ps_packs import PackWatch
from vigil.media.status import STATUS_NO_FRAME, STATUS_OK


def _program_stream(footage, tmp_path, fps: int, muxer: str):
    times = [i / fps for i in range(20 * fps)]
    options = {"g": "17" if fps == 10 else str(fps), "bf": "2"}
    clip = corpus.encode(corpus._frames(footage, len(times)), times, tmp_path / "clean.mp4", options=options, rate=fps)
    stream = corpus.remux(corpus.remux(clip, tmp_path / "clean.ts", format="mpegts"), tmp_path / "clean.mpg", format=muxer)
    return clip, stream


def _damaged(stream, target, damage: str):
    data = bytearray(stream.read_bytes())
    middle, length = len(data) // 2, 60_000
    if damage == "random":
        data[middle : middle + length] = random.Random(3).randbytes(length)
    elif damage == "tail":  # the last 30 KB: lost after the last packet the demuxer finds
        data[-30_000:] = random.Random(2).randbytes(30_000)
    elif damage == "zeroed":
        data[middle : middle + length] = bytes(length)
    else:  # cut out, as a copy that lost a stretch
        del data[middle : middle + length]
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("damage", ["random", "zeroed", "cut", "tail"])
@pytest.mark.parametrize("fps, muxer", [(10, "mpeg"), (25, "mpeg"), (25, "vob")])
def test_damage_in_a_program_stream_is_found_and_nothing_concealed_is_analysed(footage, tmp_path, fps, muxer, damage):
    """60 KB of a 20-s program stream (MPEG-1 packs from FFmpeg's ``mpeg`` muxer, MPEG-2 from ``vob``)
    overwritten, zeroed or cut out. Before: the probe saw no damage, concealed pictures read ``ok``
    (four of them in the 10-fps clip) and a lost frame's bin read ``no_frame`` (25 fps)."""
    clip, stream = _program_stream(footage, tmp_path, fps, muxer)
    described, entries = _entries(_damaged(stream, tmp_path / "damaged.mpg", damage), 5.0, 600)

    assert described.damaged and "damaged" in " ".join(described.warnings)
    statuses = collections.Counter(e.status for e in entries)
    assert statuses[STATUS_OK] >= 30, statuses
    _assert_pictures_at_their_times(entries, clip, fps)
    if damage != "cut":  # (cut: the times after it are the clip's less the frames cut)
        times = _source_times(clip)
        for gap in (e for e in entries if e.status == STATUS_NO_FRAME):
            assert not [t for t in times if gap.seconds <= t < gap.until], f"no_frame at {float(gap.seconds)} s"


def _walked(content: bytes, chunk: int = 32768, container_format: str = "mpeg") -> PackWatch:
    watch = PackWatch(io.BytesIO(content))
    watch.read(chunk)
    watch.keep_if(container_format)  # as the probe does once FFmpeg has named the format
    while watch.read(chunk):
        pass
    return watch


def test_the_chain_of_packs_is_walked_whole_and_breaks_where_bytes_were_lost(footage, tmp_path):
    _, stream = _program_stream(footage, tmp_path, 10, "vob")
    data = stream.read_bytes()
    pack = data.find(b"\x00\x00\x01\xba", len(data) // 2)

    def breaks(content: bytes, **how):
        watch = _walked(content, **how)
        return watch.active, watch.breaks

    assert breaks(data) == (True, [])
    assert breaks(data, chunk=1000) == (True, [])  # units across reads
    assert breaks(b"IMKH" + bytes(36) + data) == (True, [])  # a vendor's header before the first pack
    glued = b"IMKH" + bytes(36) + data + b"IMKH" + bytes(36) + data  # two such files, byte for byte
    assert breaks(glued) == (True, [])
    assert breaks(data[:pack] + bytes(20) + data[pack:]) == (True, [])  # zero stuffing (VCD sectors)
    assert breaks(data[:pack] + b"\xff\xff\xff\xff" + data[pack + 4 :]) == (True, [pack])
    assert breaks(data[:pack] + data[pack + 1000 :]) == (True, [pack])  # cut out: a unit runs into the next
    assert breaks(bytes(4096) + data)[1] == [0]  # the start lost: no pack where one must be
    assert not _walked(data + bytes(100_000)).lost_after(len(data) - 1)  # a preallocated file's zeros
    assert _walked(data + random.Random(1).randbytes(5000)).lost_after(len(data) - 1)
    # In an MP4 a 442-byte H.264 unit's 4-byte length reads as a pack's start code: not walked.
    assert breaks(data, container_format="mov,mp4,m4a,3gp,3g2,mj2") == (False, [])
