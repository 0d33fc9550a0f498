"""Which H.264 packets hold a picture no other picture refers to, so that decoding up to a later
picture may skip them without changing a single pixel of it.

A packet is skippable only when every NAL unit in it is a non-IDR slice with ``nal_ref_idc`` 0,
an access unit delimiter or filler: anything else (parameter sets, SEI, IDR, extensions, a
length that does not add up) might matter to what follows, and the packet is decoded. Only
length-prefixed H.264 (MP4, MOV, MKV: the containers pictures are fetched from by seeking) is
read; other codecs are always decoded (HEVC's non-reference types still serve higher layers).
"""

from __future__ import annotations

_SLICE, _DELIMITER, _FILLER = 1, 9, 12
_HARMLESS = frozenset({_SLICE, _DELIMITER, _FILLER})


class Disposable:
    """``Disposable(stream.codec_context)(packet)``: whether the packet may be left undecoded by
    a decoder that does not want the packet's own picture."""

    def __init__(self, codec_context):
        extradata = bytes(codec_context.extradata or b"")
        # MP4/MKV carry an avcC record (first byte 1): units are length-prefixed, the prefix size
        # in its fifth byte. Annex B streams (MPEG-TS, raw) have no such record: never skipped.
        avcc = len(extradata) >= 7 and extradata[0] == 1
        self.length_size = (extradata[4] & 3) + 1 if avcc else 0
        self.enabled = avcc and codec_context.name == "h264"

    def __call__(self, packet) -> bool:
        if not self.enabled or packet.is_keyframe or not packet.size:
            return False
        data = bytes(packet)
        headers = _length_prefixed(data, self.length_size)
        if not headers:
            return False
        saw_slice = False
        for header in headers:
            if header & 0x80 or (header & 0x1F) not in _HARMLESS:
                return False  # forbidden bit set, or a unit that may matter to later pictures
            if header & 0x1F == _SLICE:
                if header & 0x60:
                    return False  # nal_ref_idc > 0: a reference picture
                saw_slice = True
        return saw_slice


def _length_prefixed(data: bytes, size: int) -> list[int] | None:
    """The NAL header bytes of a length-prefixed packet, None unless the lengths tile it exactly."""
    headers, at = [], 0
    while at < len(data):
        if at + size > len(data):
            return None
        length = int.from_bytes(data[at : at + size], "big")
        at += size
        if length == 0 or at + length > len(data):
            return None
        headers.append(data[at])
        at += length
    return headers
