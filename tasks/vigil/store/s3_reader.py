"""Reading one S3 object as a seekable file, with GETs sized to how it is read (``S3Storage.open``)."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

from vigil.store.s3_backend import S3_ERRORS, _translate
from vigil.store.storage import ObjectInfo
from vigil.uri import s3_uri


class S3RangeReader(io.RawIOBase):
    """A seekable read-only file over ranged GETs, each sized to how the file is being read.

    A read after a jump (a container index, the keyframe of one review picture) fetches a small
    range, ``min_read``; reads that carry on where the last GET ended double the next, up to
    ``max_read``, so a shard streaming its part pays few requests and little overshoot. ``expect``
    says where the caller's byte range ends (a shard's, from its plan): GETs stop there unless a
    read itself asks for more, and reads past it start small again (the decoder's few packets of
    look-ahead); a read that reaches that end returns short rather than fetch past it.
    ``fetch_ranges`` fetches given ranges (a container's start and index) in one GET each, and
    ``keep`` serves given bytes (a verified copy of the index) without fetching them; reads stop
    at their ends too. Fetched ranges are kept, least recently used dropped first, up to
    ``cache_bytes``: a caller that reads the same pictures twice (review pictures after appearance
    descriptors) fetches them once. Every GET is pinned to the ETag seen when the object was opened
    (``IfMatch``), so an object replaced mid-read fails loudly instead of mixing two versions.
    ``bytes_fetched`` and ``requests`` count what came over the wire.
    """

    def __init__(self, client, bucket: str, key: str, info: ObjectInfo, min_read: int = 32 << 10,
                 max_read: int = 4 << 20, cache_bytes: int = 16 << 20):  # fmt: skip
        super().__init__()
        self._client, self._bucket, self._key, self.info = client, bucket, key, info
        self._size = info.size
        self._pos = 0
        self._min_read, self._max_read = min_read, max(min_read, max_read)
        self._next_read = min_read
        self._streak = 0  # GETs in a row that each began where the last ended
        self._fetched_to = -1  # where the last GET ended: a read from there is sequential
        self._expected_end = 0
        self._range_ends: set[int] = set()  # where the ranges given to fetch_ranges end
        self._cache_bytes = cache_bytes
        self._cached = 0
        self._spans: OrderedDict[int, bytes] = OrderedDict()  # start offset -> bytes, least recent first
        self._lock = threading.Lock()
        self.bytes_fetched = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def expect(self, end: int) -> None:
        """The caller needs bytes up to ``end`` (exclusive) from where it reads next: read ahead no further."""
        self._expected_end = min(max(0, end), self._size)

    def fetch_ranges(self, ranges) -> None:
        """Fetch each ``(start, end)`` range, less what is already kept at its start, in one GET (the
        bytes a container is opened with: its start and its index); a read stops at their ends."""
        merged: list[list[int]] = []
        for start, end in sorted((max(0, a), min(b, self._size)) for a, b in ranges if b > a):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            self._range_ends.add(end)
            with self._lock:  # what kept spans already hold from its start on is not fetched again
                while (held := next((at + len(d) for at, d in self._spans.items() if at <= start < at + len(d)), None)):
                    start = held
            if start < end:
                self._get(start, end - start)

    def keep(self, start: int, data: bytes) -> None:
        """Serve ``data`` as the bytes from ``start`` without fetching them (a verified copy of the
        recording's index); a read stops at their end."""
        with self._lock:
            self._cached += len(data) - len(self._spans.pop(start, b""))
            self._spans[start] = bytes(data)
            self._range_ends.add(start + len(data))

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._pos < self._size:
            if written and (self._pos == self._expected_end or self._pos in self._range_ends):
                break  # the caller's range ends here: a short read, not a GET for bytes it may never need
            start, data = self._span_at(self._pos, len(view) - written)
            chunk = data[self._pos - start : self._pos - start + len(view) - written]
            if not chunk:
                break
            view[written : written + len(chunk)] = chunk
            written += len(chunk)
            self._pos += len(chunk)
        return written

    def _span_at(self, pos: int, wanted: int) -> tuple[int, bytes]:
        with self._lock:
            for start, data in reversed(self._spans.items()):
                if start <= pos < start + len(data):
                    self._spans.move_to_end(start)
                    return start, data
            sequential = pos == self._fetched_to and pos != self._expected_end
            # Sizes double from the second GET that carries on: a picture's keyframe is often read
            # whole by the first, and the few frames after it need little more.
            self._streak = self._streak + 1 if sequential else 0
            self._next_read = min(self._min_read << min(max(0, self._streak - 1), 16), self._max_read)
            length = max(wanted, self._next_read)
            if pos < self._expected_end:  # no further than the caller's range, unless the read asks for it
                length = max(wanted, min(length, self._expected_end - pos))
        return self._get(pos, length)

    def _get(self, pos: int, length: int) -> tuple[int, bytes]:
        end = min(self._size, pos + length) - 1
        kwargs = {"IfMatch": f'"{self.info.etag}"'} if self.info.etag else {}
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={pos}-{end}", **kwargs)
            data = body["Body"].read()
        except S3_ERRORS as exc:
            raise _translate(exc, s3_uri(self._bucket, self._key)) from exc
        with self._lock:
            self.bytes_fetched += len(data)
            self.requests += 1
            self._fetched_to = pos + len(data)
            self._cached += len(data) - len(self._spans.pop(pos, b""))
            self._spans[pos] = data
            while self._cached > self._cache_bytes and len(self._spans) > 1:
                self._cached -= len(self._spans.popitem(last=False)[1])
        return pos, data
