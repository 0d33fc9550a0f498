"""Readers that wrap a storage handle."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO


class HashingReader(io.RawIOBase):
    """Pass reads through and hash the bytes in file order as a reader moves forward, so one pass
    both probes a recording and fingerprints it. Bytes read ahead of the hashed frontier (a
    container index at the end) are kept, up to ``keep_ahead``, and hashed from memory when the
    frontier reaches them; ``hexdigest`` reads only what is left and was never read."""

    def __init__(self, raw: BinaryIO, keep_ahead: int = 16 << 20):
        super().__init__()
        self._raw = raw
        self._digest = hashlib.sha256()
        self._pos = raw.tell()
        self._hashed = 0  # bytes [0, _hashed) are in the digest
        self._ahead: dict[int, bytes] = {}  # start offset -> bytes read beyond the frontier
        self._room = keep_ahead

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = self._raw.seek(offset, whence)
        return self._pos

    def readinto(self, buffer) -> int:
        count = self._raw.readinto(buffer) or 0
        data = memoryview(buffer).cast("B")[:count]
        if self._pos <= self._hashed < self._pos + count:
            self._digest.update(data[self._hashed - self._pos :])
            self._hashed = self._pos + count
            self._hash_kept()
        elif self._pos > self._hashed and 0 < count <= self._room:
            self._ahead[self._pos] = bytes(data)
            self._room -= count
        self._pos += count
        return count

    def _hash_kept(self) -> None:
        """Carry the frontier on through kept bytes that now touch it."""
        while kept := next(((at, d) for at, d in self._ahead.items() if at <= self._hashed < at + len(d)), None):
            at, data = kept
            self._digest.update(memoryview(data)[self._hashed - at :])
            self._hashed = at + len(data)
        for at in [at for at, d in self._ahead.items() if at + len(d) <= self._hashed]:
            self._room += len(self._ahead.pop(at))

    def hexdigest(self, chunk_size: int = 4 << 20) -> str:
        """The SHA-256 of the whole stream (the read position is left where it was)."""
        self._hash_kept()
        self._raw.seek(self._hashed)
        while True:
            following = min((at for at in self._ahead if at > self._hashed), default=None)
            size = chunk_size if following is None else min(chunk_size, following - self._hashed)
            chunk = self._raw.read(size)
            if not chunk:
                break
            self._digest.update(chunk)
            self._hashed += len(chunk)
            self._hash_kept()
            self._raw.seek(self._hashed)
        self._raw.seek(self._pos)
        return self._digest.hexdigest()
