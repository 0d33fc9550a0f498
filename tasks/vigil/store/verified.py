"""Read only verified bytes: every file a reader takes from an output is hashed as it is read and
compared with its manifest's SHA-256, so an altered file is an error naming it, never a silently
different answer. The hash is over the bytes already in memory (no second read): the cost is
SHA-256's speed, measured in the README ("Chain of custody")."""

from __future__ import annotations

import hashlib

from vigil.errors import IntegrityError
from vigil.store.manifest import Manifest
from vigil.store.schema import DERIVED_TABLES
from vigil.store.storage import Storage
from vigil.uri import join_uri


class AlteredFileError(IntegrityError):
    """A file read from an output differs from what its manifest lists."""


def read_verified(storage: Storage, uri: str, sha256: str) -> bytes:
    """The bytes of ``uri``, provided their SHA-256 is ``sha256``."""
    data = storage.read_bytes(uri)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise AlteredFileError(f"{uri}: SHA-256 is {actual}, its manifest says {sha256}: the file was changed after "
                               "it was written; nothing was read from it (run `vigil verify` on the output)")  # fmt: skip
    return data


def listed_files(manifest: Manifest, out: str, table: str) -> list[tuple[str, str]]:
    """``(uri, sha256)`` of one table's files listed by a manifest (as ``manifest.file_uris``)."""
    if table in manifest.derived:
        entry = manifest.derived[table]
        return [(join_uri(out, entry["path"]), entry["sha256"])]
    if table in DERIVED_TABLES:
        return []  # a derived table this recording lacks (track_appearance when frames were unreadable)
    return [(join_uri(out, s.files[table]["path"]), s.files[table]["sha256"]) for s in manifest.shards]
