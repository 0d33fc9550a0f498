"""Object storage behind one small interface: ``s3://bucket/key`` (boto3) and ``file:///path``.

Both backends list, stat, open for (seekable, ranged) reading and publish whole files atomically:
a reader never sees a half-written object under its final name. ``file://`` writes a temporary
file beside the target and renames it; S3 has no rename, so a finished file is sent in one PUT.
With ``if_absent=True`` the publish is a conditional create (``os.link`` / ``If-None-Match: *``):
of two writers racing for one key exactly one wins, and the loser learns it.

Credentials never pass through vigil's parameters: an S3 endpoint and its keys come from an
Airflow connection id (``VIGIL_S3_CONN_ID`` or the ``conn_id`` argument) or from the standard
AWS environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, profiles, instance roles).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Protocol

from vigil.uri import parse_uri


@dataclass(frozen=True)
class ObjectInfo:
    """What storage says about one object: enough to pin the exact bytes that were read."""

    uri: str
    size: int
    etag: str | None = None
    last_modified: str | None = None  # ISO 8601, UTC
    version_id: str | None = None


class Storage(Protocol):
    """The operations vigil needs from any object store."""

    def list(self, prefix_uri: str) -> list[ObjectInfo]: ...
    def stat(self, uri: str) -> ObjectInfo: ...
    def open(self, uri: str, etag: str | None = None, *, cache_bytes: int = ...) -> BinaryIO: ...
    def read_bytes(self, uri: str) -> bytes: ...
    def write_bytes(self, uri: str, data: bytes, *, if_absent: bool = False) -> bool: ...


def storage_for(uri: str, conn_id: str | None = None) -> Storage:
    """The backend for a URI's scheme."""
    scheme = parse_uri(uri).scheme
    if scheme == "file":
        from vigil.store.file_backend import FileStorage

        return FileStorage()
    from vigil.store.s3_backend import S3Storage

    return S3Storage.from_conn_id(conn_id if conn_id is not None else os.environ.get("VIGIL_S3_CONN_ID"))


def iter_objects(storage: Storage, prefix_uri: str, suffixes: tuple[str, ...]) -> Iterator[ObjectInfo]:
    """Objects under a prefix whose names end with one of ``suffixes`` (case-insensitive)."""
    for info in storage.list(prefix_uri):
        if info.uri.lower().endswith(suffixes):
            yield info
