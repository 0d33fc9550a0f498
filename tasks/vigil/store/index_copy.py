"""A copy of a recording's MP4 index in the output store, so that shards and review pictures do
not read it from the recording again.

A recorder writes an MP4's index (its ``moov`` box: 320 KB for an hour at 25 frames/s) at the end
of the file, and FFmpeg needs all of it to open the file: seven shards and the review pictures
read it eight times over, 3 % of the recording's bytes. Planning reads it anyway; it keeps a copy
at ``layout.index_copy_uri`` (named by its SHA-256: runs over the same recording share it), and
each shard and the review pictures are handed that copy instead, once its SHA-256 matches the
plan's. A copy that is missing or altered costs bytes, never results: the reader then fetches the
index from the recording itself, as before.
"""

from __future__ import annotations

import hashlib
import logging
from typing import BinaryIO

from vigil.errors import VigilError
from vigil.store import layout
from vigil.store.storage import storage_for
from vigil.store.verified import AlteredFileError, read_verified

log = logging.getLogger(__name__)


def read_index(handle: BinaryIO, index_bytes: tuple[int, int]) -> bytes:
    """The index's bytes, read before the container is opened: a remote reader fetches them in one
    request and keeps them for FFmpeg, which reads them next. The read position is left at 0."""
    start, end = index_bytes
    if hasattr(handle, "fetch_ranges"):
        handle.fetch_ranges([(start, end)])
    handle.seek(start)
    data = b""
    while len(data) < end - start and (chunk := handle.read(end - start - len(data))):
        data += chunk
    handle.seek(0)
    return data


def save_index(out: str, conn_id: str | None, data: bytes) -> str:
    """Keep ``data`` (a recording's index) in the output store; its SHA-256, or "" where it could
    not be written (the shards then read the index from the recording)."""
    sha256 = hashlib.sha256(data).hexdigest()
    try:  # written every time: the name is the content's hash, so a squatted name is put right
        storage_for(out, conn_id).write_bytes(layout.index_copy_uri(out, sha256), data)
    except (VigilError, OSError) as exc:
        log.warning("%s: could not keep a copy of the recording's index (%s); shards read it from the recording", out, exc)
        return ""
    return sha256


def lend_index(handle: BinaryIO, out: str, conn_id: str | None, index_bytes, index_sha256: str) -> bool:
    """Hand a remote reader of the recording (one with ``keep``) the verified index copy, so that
    FFmpeg's reads of the index are served without fetching it. True when it was handed over."""
    keep = getattr(handle, "keep", None)
    if keep is None or not index_bytes or not index_sha256:
        return False
    start, end = index_bytes
    if not 0 <= start < end <= getattr(getattr(handle, "info", None), "size", -1):
        return False
    storage, uri = storage_for(out, conn_id), layout.index_copy_uri(out, index_sha256)
    try:
        if storage.stat(uri).size != end - start:  # checked before reading: anyone may have replaced it
            raise AlteredFileError(f"{uri}: not the size of the recording's index")
        data = read_verified(storage, uri, index_sha256)
    except (VigilError, OSError) as exc:
        log.warning("index copy not used (%s); reading the index from the recording", exc)
        return False
    keep(start, data)
    return True
