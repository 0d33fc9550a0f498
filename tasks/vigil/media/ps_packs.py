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
SYSTEM_CODES = 0xB9  # stream codes at or above this are the system layer's


class PackWatch:
    """A file-like wrapper around ``source``; ``breaks`` lists the offsets where the chain of units
    broke. Inactive unless a pack starts within the file's first kilobyte."""

    def __init__(self, source: BinaryIO):
        self._source = source
        self.breaks: list[int] = []
        self.active: bool | None = None  # decided by the first read from the file's start
        self._buffer = b""  # bytes not yet walked whole, from file offset self._base
        self._base = 0
        self._at = 0  # where the next unit begins, as an index into self._buffer
        self._lost = False  # resynchronising: looking for the next pack

    def __getattr__(self, name):
        return getattr(self._source, name)

    def read(self, size: int = -1) -> bytes:
        at = self._source.tell()
        data = self._source.read(size)
        if data and self.active is not False:
            self._feed(at, data)
        return data

    def lost_between(self, after: int, upto: int) -> bool:
        """Whether the chain broke at a byte in ``(after, upto]`` (packet offsets; ``after`` -1: none yet)."""
        i = bisect.bisect_right(self.breaks, after)  # found in file order: sorted
        return i < len(self.breaks) and self.breaks[i] <= upto

    def _feed(self, at: int, data: bytes) -> None:
        if self.active is None:
            if at != 0:
                return
            first = data.find(PACK, 0, FIRST_PACK_WITHIN + 4)
            self.active = first >= 0
            self._buffer, self._base, self._at = (data, 0, first) if self.active else (b"", 0, 0)
        else:
            end = self._base + len(self._buffer)
            if at > end or at + len(data) <= end:
                return  # ahead of the walk (left for when the demuxer gets there), or walked
            self._buffer = self._buffer[self._at :] + data[end - at :]  # one copy per read, not per unit
            self._base += self._at
            self._at = 0
        if self.active:
            self._walk()

    def _walk(self) -> None:
        buffer = self._buffer
        while len(buffer) - self._at >= 6:
            if self._lost:
                found = buffer.find(PACK, self._at)
                if found < 0:  # keep 3 bytes: a start code may straddle the next read
                    self._at = max(len(buffer) - 3, self._at)
                    return
                self._at, self._lost = found, False
            length = self._unit_length(buffer, self._at)
            if length is None or self._at + length > len(buffer):
                return  # the unit runs into the next read
            if length < 0:  # no start code where a unit must begin
                self.breaks.append(self._base + self._at)
                self._lost = True
                self._at += 1
                continue
            self._at += length

    @staticmethod
    def _unit_length(data: bytes, at: int) -> int | None:
        """Bytes of the unit starting at ``at``; -1: no start code there; None: its header not yet whole."""
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
