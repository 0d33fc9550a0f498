"""MPEG program stream packs checked as the probe's demuxer reads them, to find lost or damaged bytes.

FFmpeg's program-stream demuxer skips bytes it cannot parse to the next start code without a word,
and the decoder conceals most of what follows: a damaged copy would read as intact. A program stream
is a chain of units, each a start code (00 00 01, then a system code, 0xB9 or above) and a length
(a pack header's from its layout, every other unit's from its 16-bit length field), so the byte
where a unit should begin and holds no start code is where data was lost or overwritten. Elementary
video never holds a system code (H.264/HEVC NAL headers and MPEG video start codes lie below 0xB9).

``PackWatch`` wraps the file the demuxer reads, so the packs are checked in the same pass, with no
second read of the recording: bytes are walked in order as they first arrive; a read past what was
walked (FFmpeg looks at the end for the duration) is left for when the demuxer gets there.
"""

from __future__ import annotations

import bisect
from typing import BinaryIO

PACK = b"\x00\x00\x01\xba"
FIRST_PACK_WITHIN = 1024  # vendor headers before the first pack (e.g. 40 bytes of "IMKH")
LOOK_FOR_FIRST_PACK = 1 << 20  # a program stream whose first pack lies further in is damaged at its start
MAX_STUFFING = 2048  # zero bytes allowed before a unit (a VCD sector ends with 20 after audio)
VENDOR_MAGIC, VENDOR_HEADER_MAX = b"IMKH", 64  # Hikvision's 40-byte file header
SYSTEM_CODES = 0xB9  # stream codes at or above this are the system layer's
PROGRAM_STREAM_DEMUXERS = frozenset({"mpeg"})  # FFmpeg's name for MPEG-PS (VOB, VCD, DVR exports)


class PackWatch:
    """A file-like wrapper around ``source``; ``breaks`` lists the offsets where the chain of units
    broke (0: the file's start holds no pack). Only program streams are walked (``keep_if``)."""

    def __init__(self, source: BinaryIO):
        self._source = source
        self.breaks: list[int] = []
        self.active: bool | None = None  # None: looking for the first pack in the file's first bytes
        self._buffer = b""  # bytes not yet walked whole, from file offset self._base
        self._base = 0
        self._at = 0  # where the next unit begins, as an index into self._buffer
        self._lost = False  # resynchronising: looking for the next pack
        self._lost_data = False  # since the last break, bytes other than zeros were skipped

    def __getattr__(self, name):
        return getattr(self._source, name)

    def read(self, size: int = -1) -> bytes:
        if self.active is False:  # not a program stream: reads pass straight through
            return self._source.read(size)
        at = self._source.tell()
        data = self._source.read(size)
        if data:
            self._feed(at, data)
        return data

    def keep_if(self, container_format: str) -> None:
        """Stop, and forget what was found, unless the demuxer reads a program stream: in an MP4 or
        MKV a 442-byte H.264 unit's length field reads as a pack's start code."""
        if container_format not in PROGRAM_STREAM_DEMUXERS:
            self.active, self.breaks, self._buffer = False, [], b""

    def lost_between(self, after: int, upto: int) -> bool:
        """Whether the chain broke at a byte in ``(after, upto]`` (packet offsets; ``after`` -1: none yet)."""
        i = bisect.bisect_right(self.breaks, after)  # found in file order: sorted
        return i < len(self.breaks) and self.breaks[i] <= upto

    def lost_after(self, offset: int) -> bool:
        """Whether data was lost after byte ``offset`` (the last packet's): a break there, unless all
        that follows it is zeros (a recorder's preallocated file)."""
        if not self.active or not self.lost_between(offset, 1 << 62):
            return False
        earlier_break_too = len(self.breaks) > 1 and self.breaks[-2] > offset
        return earlier_break_too or not self._lost or self._lost_data  # (still lost at the end: only zeros?)

    def _feed(self, at: int, data: bytes) -> None:
        end = self._base + len(self._buffer)
        if at > end or at + len(data) <= end:
            return  # ahead of the walk (left for when the demuxer gets there), or walked
        self._buffer = self._buffer[self._at :] + data[end - at :]  # one copy per read, not per unit
        self._base += self._at
        self._at = 0
        if self.active is None:
            first = self._buffer.find(PACK)
            if first < 0:
                if len(self._buffer) > LOOK_FOR_FIRST_PACK:
                    self.active, self._buffer = False, b""
                return
            self.active, self._at = True, first
            if first > FIRST_PACK_WITHIN:
                self.breaks.append(0)  # more than a vendor's header before the first pack
        self._walk()

    def _walk(self) -> None:
        buffer = self._buffer
        while len(buffer) - self._at >= 6:
            if self._lost:
                found = buffer.find(PACK, self._at)
                skipped = buffer[self._at : found if found >= 0 else max(len(buffer) - 3, self._at)]
                self._lost_data = self._lost_data or bool(skipped.strip(b"\x00"))
                self._at += len(skipped)
                if found < 0:  # (3 bytes kept: a start code may straddle the next read)
                    return
                self._lost = False
            length = self._unit_length(buffer, self._at)
            if length is None or self._at + length > len(buffer):
                return  # the unit runs into the next read
            if length >= 0:
                self._at += length
                continue
            window = buffer[self._at : self._at + MAX_STUFFING + 8]
            zeros = len(window) - len(window.lstrip(b"\x00"))
            after = self._unit_length(buffer, self._at + zeros - 2) if 2 < zeros <= MAX_STUFFING + 2 else -1
            if after is None or (zeros == len(window) and zeros <= MAX_STUFFING):
                return  # zeros up to what was read, or a unit's header after them not yet whole: wait
            if after >= 0:
                self._at += zeros - 2  # zero stuffing, then a unit
                continue
            header = buffer.find(PACK, self._at, self._at + VENDOR_HEADER_MAX + 4)
            if buffer.startswith(VENDOR_MAGIC, self._at) and header > 0:
                self._at = header  # a vendor's file header: files glued byte for byte
                continue
            self.breaks.append(self._base + self._at)  # no start code where a unit must begin
            self._lost, self._lost_data = True, False

    @staticmethod
    def _unit_length(data: bytes, at: int) -> int | None:
        """Bytes of the unit starting at ``at``; -1: no start code there; None: its header not yet whole."""
        if len(data) < at + 6:
            return None
        if data[at : at + 3] != b"\x00\x00\x01" or data[at + 3] < SYSTEM_CODES:
            return -1
        code = data[at + 3]
        if code == 0xB9:  # program end
            return 4
        if code != 0xBA:
            return 6 + int.from_bytes(data[at + 4 : at + 6], "big")
        if len(data) < at + 14:
            return None
        if data[at + 4] >> 6 == 1:  # MPEG-2 pack header: 14 bytes and its stuffing
            return 14 + (data[at + 13] & 7)
        return 12 if data[at + 4] >> 4 == 2 else -1  # MPEG-1's: 12 bytes
