"""All-or-nothing publication of a shard's tables: one commit marker per shard.

Each attempt of a shard writes its tables under its own attempt-keyed names (``layout.attempt_uri``),
then creates the shard's one marker (``layout.commit_uri``) with a conditional create. The marker
names the winning attempt's files (path relative to the output, sha256, rows, bytes). An attempt
that finds a marker already there deletes its own files and takes the winner's, hash-checked; a
crashed attempt (tables, no marker) is never used. So a shard's tables always come from one attempt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets

from vigil.errors import ObjectNotFound, ShardCommitBroken
from vigil.store.contracts import FileEntry
from vigil.store.layout import commit_path_of
from vigil.store.storage import Storage
from vigil.uri import join_uri

log = logging.getLogger(__name__)

COMMIT_VERSION = 1
_ENTRY_KEYS = ("path", "sha256", "rows", "bytes")


def new_attempt() -> str:
    """A name part no other attempt of the shard will use (``a`` and 12 hex digits)."""
    return "a" + secrets.token_hex(6)


def commit_shard(storage: Storage, out: str, marker_uri: str, attempt: str, files: dict[str, FileEntry]) -> dict[str, FileEntry]:
    """Create the shard's marker naming ``files``; if another attempt committed first, delete
    ``files`` (best effort) and return the winner's files instead."""
    prefix = out.rstrip("/") + "/"
    body = {"commit_version": COMMIT_VERSION, "attempt": attempt,
            "files": {name: {"path": e.uri[len(prefix):], "sha256": e.sha256, "rows": e.rows, "bytes": e.bytes}
                      for name, e in files.items()}}  # fmt: skip
    if storage.write_bytes(marker_uri, _canonical(body), if_absent=True):
        return files
    winner = committed_files(storage, out, marker_uri)
    if winner is None:  # a conditional create refused, yet nothing there: the store is not consistent
        raise ShardCommitBroken(f"{marker_uri}: the commit marker was refused but cannot be read; check the store")
    for uri in sorted({e.uri for e in files.values()} - {e.uri for e in winner.values()}):
        try:
            storage.delete(uri)
        except Exception as error:  # a leftover is read by nothing; verify notes it as unlisted
            log.warning("%s: could not delete the losing attempt's file (%s); nothing reads it", uri, error)
    log.info("%s: another attempt committed the shard first; its files are used", marker_uri)
    return winner


def committed_files(storage: Storage, out: str, marker_uri: str) -> dict[str, FileEntry] | None:
    """The files the shard's marker names, each checked against its hash; None with no marker."""
    try:
        body = _load(storage.read_bytes(marker_uri), marker_uri)
    except ObjectNotFound:
        return None
    files = {}
    for name, entry in body["files"].items():
        uri = join_uri(out, entry["path"])
        try:
            data = storage.read_bytes(uri)
        except ObjectNotFound as error:
            raise ShardCommitBroken(f"{uri}: named by {marker_uri} but missing; remove the marker to re-run the shard") from error
        if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != entry["bytes"]:
            raise ShardCommitBroken(f"{uri}: does not match its hash in {marker_uri}; the output was altered")
        files[name] = FileEntry(uri=uri, sha256=entry["sha256"], rows=entry["rows"], bytes=entry["bytes"])
    return files


def check_against_manifest(storage: Storage, out: str, shard_files: dict[str, dict]) -> tuple[str | None, str | None]:
    """For ``vigil verify``: (marker uri, problem) for one manifest shard's ``{table: entry}``.
    The marker must name exactly the files the manifest lists; (None, None) for files older than
    commit markers."""
    paths = {commit_path_of(entry["path"]) for entry in shard_files.values()}
    if paths == {None}:
        return None, None
    if len(paths) != 1 or None in paths:
        return None, f"shard files {sorted(e['path'] for e in shard_files.values())} come from different attempts"
    marker_uri = join_uri(out, paths.pop())
    try:
        body = _load(storage.read_bytes(marker_uri), marker_uri)
    except ObjectNotFound:
        return marker_uri, f"{marker_uri}: commit marker of a listed shard is missing"
    except ShardCommitBroken as error:
        return marker_uri, str(error)
    listed = {name: {k: entry.get(k) for k in _ENTRY_KEYS} for name, entry in shard_files.items()}
    if body["files"] != listed or any(not e["path"].endswith(f"-{body['attempt']}.parquet") for e in shard_files.values()):
        return marker_uri, f"{marker_uri}: names other files than the manifest lists for its shard"
    return marker_uri, None


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True).encode() + b"\n"


def _load(data: bytes, marker_uri: str) -> dict:
    """A marker exactly as vigil writes it: any other byte is a change."""
    try:
        body = json.loads(data)
    except ValueError as error:
        raise ShardCommitBroken(f"{marker_uri}: commit marker is not JSON ({error}); the output was altered") from error
    if not isinstance(body, dict) or body.get("commit_version") != COMMIT_VERSION or _canonical(body) != data:
        raise ShardCommitBroken(f"{marker_uri}: not a commit marker as vigil writes it; the output was altered")
    return body
