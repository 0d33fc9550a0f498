"""Readers that wrap a storage handle."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO


class HashingReader(io.RawIOBase):
    """Pass reads through and hash the bytes in file order as a reader moves forward, so one pass
    both probes a recording and fingerprints it. Jumps ahead (a container index at the end) are
    not hashed then; ``hexdigest`` reads what is left from the hashed frontier onwards."""

    def __init__(self, raw: BinaryIO):
        super().__init__()
        self._raw = raw
        self._digest = hashlib.sha256()
        self._pos = raw.tell()
        self._hashed = 0  # bytes [0, _hashed) are in the digest

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
        if self._pos <= self._hashed < self._pos + count:
            self._digest.update(memoryview(buffer).cast("B")[self._hashed - self._pos : count])
            self._hashed = self._pos + count
        self._pos += count
        return count

    def hexdigest(self, chunk_size: int = 4 << 20) -> str:
        """The SHA-256 of the whole stream (the read position is left where it was)."""
        self._raw.seek(self._hashed)
        while chunk := self._raw.read(chunk_size):
            self._digest.update(chunk)
            self._hashed += len(chunk)
        self._raw.seek(self._pos)
        return self._digest.hexdigest()
