"""Readers that wrap a storage handle."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO


class HashingReader(io.RawIOBase):
    """Pass reads through and hash the bytes in file order as a reader moves forward, so one pass
    both probes a recording and fingerprints it. Bytes read ahead of the hashed frontier (a
    container index at the end) are kept, up to ``keep_ahead``: hashed from memory when the
    frontier reaches them, and served from memory when read again (the demuxer passes over the
    index once more at the end); ``hexdigest`` reads only what was never read."""

    def __init__(self, raw: BinaryIO, keep_ahead: int = 16 << 20):
        super().__init__()
        self._raw = raw
        self._digest = hashlib.sha256()
        self._pos = raw.tell()
        self._raw_pos = self._pos
        self._hashed = 0  # bytes [0, _hashed) are in the digest
        self._kept: dict[int, bytearray] = {}  # start -> contiguous bytes read ahead of the frontier
        self._room = keep_ahead
        self._expected = -1  # the read-ahead bound last given to the raw reader

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = self._raw_pos = self._raw.seek(offset, whence)
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        pos = self._pos
        inside = self._kept_around(pos)
        if inside is not None:  # from memory: at most to the end of what is kept
            at, data = inside
            count = min(len(view), at + len(data) - pos)
            view[:count] = data[pos - at : pos - at + count]
        else:  # from the source: at most up to the next kept bytes
            following = min((at for at in self._kept if at > pos), default=None)
            wanted = len(view) if following is None else min(len(view), following - pos)
            if following is not None and following != self._expected and hasattr(self._raw, "expect"):
                self._raw.expect(following)  # a remote reader: no read-ahead into what is kept
                self._expected = following
            if self._raw_pos != pos:
                self._raw.seek(pos)
            count = self._raw.readinto(view[:wanted]) or 0
            self._raw_pos = pos + count
            if pos > self._hashed and count:
                self._keep(pos, view[:count])
        if pos <= self._hashed < pos + count:
            self._digest.update(view[self._hashed - pos : count])
            self._hashed = pos + count
        self._hash_kept()
        self._pos = pos + count
        return count

    def _kept_around(self, pos: int) -> tuple[int, bytearray] | None:
        return next(((at, d) for at, d in self._kept.items() if at <= pos < at + len(d)), None)

    def _keep(self, pos: int, data) -> None:
        if len(data) > self._room:
            return
        self._room -= len(data)
        before = next((at for at, d in self._kept.items() if at + len(d) == pos), None)
        if before is None:
            self._kept[pos] = bytearray(data)
        else:
            self._kept[before] += data
        if (after := self._kept.pop(pos + len(data), None)) is not None:  # now joins the next run
            self._kept[before if before is not None else pos] += after

    def _hash_kept(self) -> None:
        """Carry the frontier on through kept bytes that now touch it."""
        while (inside := self._kept_around(self._hashed)) is not None:
            at, data = inside
            self._digest.update(memoryview(data)[self._hashed - at :])
            self._hashed = at + len(data)

    def hexdigest(self, chunk_size: int = 4 << 20) -> str:
        """The SHA-256 of the whole stream (the read position is left where it was)."""
        self._hash_kept()
        while True:
            following = min((at for at in self._kept if at > self._hashed), default=None)
            size = chunk_size if following is None else min(chunk_size, following - self._hashed)
            self._raw.seek(self._hashed)
            chunk = self._raw.read(size)
            if not chunk:
                break
            self._digest.update(chunk)
            self._hashed += len(chunk)
            self._hash_kept()
        self._raw_pos = self._raw.seek(self._pos)
        return self._digest.hexdigest()
