"""``file://`` storage: a local (or mounted) filesystem, published atomically by rename.

A listing never leaves the folder listed: a symlink whose target lies outside it is skipped and
logged (one planted in a drop folder must not make vigil read any file the worker can). A file
has no ETag, so ``stat`` gives one made of (size, mtime_ns, inode): a file replaced between
planning and analysis — even by one of the same size — no longer matches, and ``open`` refuses it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from vigil.errors import ObjectNotFound, SourceChanged
from vigil.faults import checkpoint
from vigil.store.storage import ObjectInfo
from vigil.uri import file_uri, is_within, normalise_uri, parse_uri

log = logging.getLogger(__name__)


def file_etag(st: os.stat_result) -> str:
    """What pins a local file's version: size, modification time (ns) and inode."""
    return f"{st.st_size}-{st.st_mtime_ns}-{st.st_ino}"


class FileStorage:
    """The embedded default: a local (or mounted) filesystem addressed by file:// URIs."""

    def list(self, prefix_uri: str) -> list[ObjectInfo]:
        root = Path(parse_uri(prefix_uri).key)
        if root.is_file():
            return [self.stat(prefix_uri)]
        if not root.is_dir():
            return []
        real_root = "file://" + os.path.realpath(root)
        found = []
        for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are not entered
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(".") and ".tmp-" in name:
                    continue  # another writer's unpublished file
                path = Path(dirpath) / name
                if path.is_symlink() and not is_within("file://" + os.path.realpath(path), real_root):
                    log.warning("skipped %s: a symlink to %s, outside %s", path, os.path.realpath(path), root)
                    continue
                found.append(self.stat(file_uri(path)))
        return found

    def stat(self, uri: str) -> ObjectInfo:
        path = Path(parse_uri(uri).key)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{uri}: no such file") from exc
        if not path.is_file():
            raise ObjectNotFound(f"{uri}: not a regular file")
        modified = datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat()
        return ObjectInfo(uri=normalise_uri(uri), size=st.st_size, etag=file_etag(st), last_modified=modified)

    def open(self, uri: str, etag: str | None = None, *, cache_bytes: int = 0) -> BinaryIO:
        """The file for reading; with ``etag`` (from ``stat``) only if it is still that version.
        ``cache_bytes`` is for remote readers: the OS caches what a local file re-reads."""
        try:
            handle = open(parse_uri(uri).key, "rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{uri}: no such file") from exc
        if etag and file_etag(os.fstat(handle.fileno())) != etag:
            now = file_etag(os.fstat(handle.fileno()))
            handle.close()
            raise SourceChanged(f"{uri}: the file changed since it was hashed (size-mtime-inode {etag} -> {now}); trigger the run again")
        return handle

    def read_bytes(self, uri: str) -> bytes:
        with self.open(uri) as handle:
            return handle.read()

    def write_bytes(self, uri: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Publish ``data`` under ``uri`` atomically; with ``if_absent`` return False if it exists."""
        target = Path(parse_uri(uri).key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; published outputs are for readers too
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            checkpoint("write")  # the file is complete on disk but not yet under its name
            if if_absent:
                try:
                    os.link(tmp, target)  # atomic create-if-absent
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, target)
            _fsync_dir(target.parent)
            return True
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def delete(self, uri: str) -> None:
        Path(parse_uri(uri).key).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
