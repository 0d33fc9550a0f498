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


@pytest.mark.parametrize("kind", ["footage", "closed", "open"])
def test_every_picture_is_bit_identical_to_a_full_decode_with_disposable_pictures_skipped(
    footage, tmp_path, kind, monkeypatch
):
    from corpus import b_frames_odd_gop

    path = footage if kind == "footage" else b_frames_odd_gop(footage, tmp_path / f"{kind}.mp4", kind == "open")
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
    wanted = [(i, float(described.seconds(pts))) for i, pts in enumerate(chosen)]
    with open(path, "rb") as handle:
        got = {i: hashlib.sha256(image.tobytes()).hexdigest() for i, image in fetch.fetch_frames(handle, str(path), described, wanted)}
    assert got == {i: reference[pts] for i, pts in enumerate(chosen)}
    assert sum(skipped) > 10  # B-frames on the way were left undecoded: the skip was exercised


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
