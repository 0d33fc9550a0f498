"""Review pictures fetched again from the recording: exactly the frames a full decode gives, with
pictures nothing refers to left undecoded on the way (``vigil.media.nal``)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import pytest

from vigil.media import fetch
from vigil.media.nal import Disposable
from vigil.media.probe import probe


@dataclass
class _Packet:
    data: bytes
    is_keyframe: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    def __bytes__(self) -> bytes:
        return self.data


@dataclass
class _Codec:
    name: str = "h264"
    extradata: bytes = bytes([1, 0x4D, 0x40, 0x1F, 0xFF, 0xE1, 0x00])  # avcC: 4-byte lengths


def _units(*units: bytes, size: int = 4) -> bytes:
    return b"".join(len(u).to_bytes(size, "big") + u for u in units)


B_SLICE, P_SLICE, SEI, AUD = b"\x01\x9e\x00", b"\x41\x9a\x00", b"\x06\x05\x01", b"\x09\x10"


@pytest.mark.parametrize("packet, codec, expected", [
    (_Packet(_units(B_SLICE)), _Codec(), True),  # nal_ref_idc 0: nothing refers to it
    (_Packet(_units(AUD, B_SLICE, B_SLICE)), _Codec(), True),  # a delimiter and two slices
    (_Packet(_units(B_SLICE, P_SLICE)), _Codec(), False),  # one slice is a reference
    (_Packet(_units(P_SLICE)), _Codec(), False),
    (_Packet(_units(SEI, B_SLICE)), _Codec(), False),  # SEI may matter to later pictures
    (_Packet(_units(b"\x67\x4d", B_SLICE)), _Codec(), False),  # a parameter set travels with it
    (_Packet(_units(B_SLICE), is_keyframe=True), _Codec(), False),
    (_Packet(_units(B_SLICE)[:-1]), _Codec(), False),  # lengths that do not add up: damaged
    (_Packet(_units(AUD)), _Codec(), False),  # no picture in it at all
    (_Packet(b""), _Codec(), False),
    (_Packet(_units(B_SLICE, size=2)), _Codec(extradata=bytes([1, 0x4D, 0x40, 0x1F, 0xFD, 0xE1, 0])), True),
    (_Packet(b"\x00\x00\x00\x01" + B_SLICE), _Codec(extradata=b"\x00\x00\x00\x01\x67"), False),  # Annex B
    (_Packet(_units(B_SLICE)), _Codec(name="hevc"), False),
])  # fmt: skip
def test_only_pictures_nothing_refers_to_are_disposable(packet, codec, expected):
    assert Disposable(codec)(packet) is expected


def _every_picture(path):
    """The reference: every frame decoded, by pts, as a hash of its BGR pixels."""
    import av

    with av.open(str(path)) as container:
        return {f.pts: hashlib.sha256(f.to_ndarray(format="bgr24").tobytes()).hexdigest() for f in container.decode(video=0)}


@pytest.mark.parametrize("kind", ["footage", "closed", "open", "pyramid-closed", "pyramid-open"])
def test_every_picture_is_bit_identical_to_a_full_decode_with_disposable_pictures_skipped(
    footage, tmp_path, kind, monkeypatch
):
    """Also drained at the picture's own packet (``fetch._decode_from``): B-frames, a B-pyramid, open groups."""
    from corpus import b_frames_odd_gop, b_pyramid

    encode = b_pyramid if kind.startswith("pyramid") else b_frames_odd_gop
    path = footage if kind == "footage" else encode(footage, tmp_path / f"{kind}.mp4", kind.endswith("open"))
    with open(path, "rb") as handle:
        described = probe(handle, str(path))
    reference = _every_picture(path)
    # Every frame of the short encodes: those just before a keyframe and an open group's leading
    # pictures are decoded after a keyframe that an MP4 seek (by decoding time) lands on.
    chosen = sorted(reference) if kind != "footage" else sorted(random.Random(5).sample(sorted(reference), 60))
    skipped = []

    class Counting(Disposable):
        def __call__(self, packet) -> bool:
            answer = super().__call__(packet)
            skipped.append(answer)
            return answer

    monkeypatch.setattr(fetch, "Disposable", Counting)
    plain, decode_from = [], fetch._decode_from

    def counted(*args):
        plain.append(args[-1] is None)
        return decode_from(*args)

    monkeypatch.setattr(fetch, "_decode_from", counted)
    wanted = [(i, float(described.seconds(pts))) for i, pts in enumerate(chosen)]
    with open(path, "rb") as handle:
        got = {i: hashlib.sha256(image.tobytes()).hexdigest() for i, image in fetch.fetch_frames(handle, str(path), described, wanted)}
    assert got == {i: reference[pts] for i, pts in enumerate(chosen)}
    assert sum(skipped) > 10  # B-frames on the way were left undecoded: the skip was exercised
    # Drained at the picture's own packet, not decoded again plainly (an open group's leading
    # pictures, where the seek lands after them, are the exception: 0-8 of 200 measured).
    assert sum(plain) <= len(chosen) // 20, (sum(plain), len(chosen))


def test_a_track_whose_picture_cannot_be_decoded_keeps_its_place_on_the_contact_sheet():
    import cv2
    import numpy as np
    import pyarrow as pa

    from vigil.review.render import contact_sheet_jpeg

    tracks = pa.Table.from_pylist([
        {"track_id": t, "frames": 5, "best_frame_index": 10 * t, "best_pts_s": float(t),
         "best_x1": 10.0, "best_y1": 10.0, "best_x2": 60.0, "best_y2": 110.0} for t in (1, 2, 3)
    ])  # fmt: skip

    def fetch(wanted):  # the picture of track 2 does not decode
        yield from ((index, np.full((200, 200, 3), 200, np.uint8)) for index, _ in wanted if index != 20)

    sheet = cv2.imdecode(np.frombuffer(contact_sheet_jpeg(tracks, pa.table({"frame_index": []}), fetch, False), np.uint8), 1)
    assert sheet.shape[1] == 3 * 160  # three tiles: the undecodable one is shown as such, not dropped
    assert sheet[120:200, 160:320].mean() < 60 < sheet[120:200, :160].mean()  # its tile holds no picture


@pytest.mark.parametrize("kind", ["footage", "closed", "pyramid-open", "mov", "faststart"])
def test_an_mp4_index_is_found_and_every_frame_bytes_end_within_what_a_picture_asks_for(footage, tmp_path, kind):
    """``mp4_index_bytes`` finds the moov box (at the end as recorders write it, or at the front);
    ``_SampleEnds`` never says a frame's bytes end before its packet does (else a remote reader
    would stop short and fetch again in small pieces)."""
    import av

    from corpus import b_frames_odd_gop, b_pyramid, remux
    from vigil.media.containers import mp4_index_bytes

    path = {
        "footage": lambda: footage,
        "closed": lambda: b_frames_odd_gop(footage, tmp_path / "closed.mp4"),
        "pyramid-open": lambda: b_pyramid(footage, tmp_path / "pyramid.mp4", True),
        "mov": lambda: remux(b_frames_odd_gop(footage, tmp_path / "b.mp4"), tmp_path / "b.mov", format="mov"),
        "faststart": lambda: _faststart(footage, tmp_path / "faststart.mp4"),
    }[kind]()
    with open(path, "rb") as handle:
        start, end = mp4_index_bytes(handle)
        handle.seek(start + 4)
        assert handle.read(4) == b"moov" and handle.tell() == start + 8, "and the read position is restored"
        described = probe(handle, str(path))
    assert 0 < end - start < path.stat().st_size
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ends = fetch._SampleEnds(stream, described)
        packets = [(p.pts, p.pos + p.size) for p in container.demux(stream) if p.pts is not None]
    short = [pts for pts, packet_end in packets if (ends.until(fetch._raw_pts(described, float(described.seconds(pts)))) or 0) < packet_end]
    assert len(packets) == described.frame_count and not short


def _faststart(source, target):
    import av

    with av.open(str(source)) as container, av.open(str(target), "w", options={"movflags": "faststart"}) as output:
        stream = container.streams.video[0]
        copy = output.add_stream_from_template(stream)
        for packet in container.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                output.mux(packet)
    return target


@pytest.mark.parametrize("kind", ["mkv", "mpegts", "text"])
def test_other_files_have_no_mp4_index(footage, tmp_path, kind):
    from corpus import remux
    from vigil.media.containers import mp4_index_bytes

    if kind == "text":
        path = tmp_path / "notes.mp4"
        path.write_bytes(b"moov is a word in this file, but it is not an MP4\n" * 100)
    else:
        path = remux(footage, tmp_path / f"footage.{kind}", format={"mkv": "matroska"}.get(kind, kind), end_s=20)
    with open(path, "rb") as handle:
        assert mp4_index_bytes(handle) is None
    if kind == "mkv":  # Matroska cues list keyframes only: no bound is given rather than a wrong one
        import av

        with open(path, "rb") as handle:
            described = probe(handle, str(path))
        with av.open(str(path)) as container:
            assert fetch._SampleEnds(container.streams.video[0], described).until(10**12) is None


def test_a_box_that_claims_a_huge_index_is_not_taken_whole(tmp_path):
    from vigil.media.containers import MAX_INDEX_BYTES, mp4_index_bytes

    path = tmp_path / "claims.mp4"
    huge = (MAX_INDEX_BYTES + 1).to_bytes(8, "big")
    path.write_bytes(b"\0\0\0\x10ftypisom\0\0\0\0" + b"\0\0\0\x01moov" + huge + b"\0" * MAX_INDEX_BYTES)
    with open(path, "rb") as handle:
        assert mp4_index_bytes(handle) is None  # a 64-bit size no real index has: never read whole into memory
    path.write_bytes(b"\0\0\0\x10ftypisom\0\0\0\0" + b"\0\0\0\x00moov" + b"\0" * (MAX_INDEX_BYTES + 1))
    with open(path, "rb") as handle:
        assert mp4_index_bytes(handle) is None  # "to the end of the file", and the file is larger than any index


def test_frames_that_share_a_time_are_counted_and_said(footage, tmp_path):
    """A B-frame given the time of the one before it (a muxer fault): the probe says so, and
    review pictures are then decoded plainly rather than drained at the first such packet."""
    import av

    from corpus import b_frames_odd_gop

    source = b_frames_odd_gop(footage, tmp_path / "b.mp4")
    target = tmp_path / "repeated.mp4"
    with av.open(str(source)) as container, av.open(str(target), "w") as output:
        stream = container.streams.video[0]
        copy = output.add_stream_from_template(stream)
        previous_b, changed = None, 0
        for packet in container.demux(stream):
            if packet.dts is None:
                continue
            is_b = packet.pts < max(packet.dts, 0) + 3 * packet.duration and not packet.is_keyframe
            if previous_b is not None and is_b and changed < 1 and packet.pts > previous_b >= packet.dts:
                packet.pts, changed = previous_b, changed + 1
            previous_b = packet.pts if is_b else previous_b
            packet.stream = copy
            output.mux(packet)
    assert changed == 1
    with open(target, "rb") as handle:
        described = probe(handle, str(target))
    assert described.repeated_times == 1
    assert any("share their presentation time" in w for w in described.warnings)
    with open(source, "rb") as handle:
        assert probe(handle, str(source)).repeated_times == 0
