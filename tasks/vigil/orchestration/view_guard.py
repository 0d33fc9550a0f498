"""What the Airflow UI page may serve, and how: the page runs on the Airflow origin, where a
script would act with the viewer's Airflow session, and it shows what the output store says —
which anyone with write access to that store can shape.

- Only files a manifest lists are served, and only when their bytes hash to the manifest's SHA-256.
- A listed path must lie under the output, and no symlink on the way is followed.
- Every response says what it is (``nosniff``), HTML pages carry a strict CSP (no script at all;
  styles allowed by hash), and report pages are sandboxed (an opaque origin, no session).
- Manifests are parsed once per version (cached by URI and ETag); one that cannot be read, or that
  the ledger does not vouch for (store/vouched.py), is skipped and named on the page instead of
  breaking it or passing for a recording vigil processed.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from dataclasses import dataclass

from vigil.errors import IntegrityError, ObjectNotFound, VigilError
from vigil.review.report import STYLE as REPORT_STYLE
from vigil.review.report import csp_hash
from vigil.store.manifest import Manifest, load_manifest
from vigil.store.schema import MANIFESTS
from vigil.store.storage import ObjectInfo, Storage
from vigil.store.vouched import Vouching, declares_ledger, deployment_keys
from vigil.uri import is_within, join_uri, parse_uri

# The only names a manifest's "artifacts" may list that the page serves, with their types.
SERVABLE = re.compile(r"^(timeline\.png|contact_sheet\.jpg|event-\d{3}\.jpg|report\.html)$")
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".html": "text/html; charset=utf-8"}
_COMMON = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"


def page_headers(style: str) -> dict[str, str]:
    """Headers of the recordings page: its own images, its one style block, nothing else."""
    return {
        "Content-Security-Policy": f"{_COMMON}; img-src 'self'; style-src {csp_hash(style)}",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def case_headers(style: str, script: str) -> dict[str, str]:
    """Headers of the case view: inline pictures, clips from this server, its one style and its one
    script, each pinned by hash."""
    return {
        **page_headers(style),
        "Content-Security-Policy": f"{_COMMON}; img-src data:; media-src 'self'; style-src {csp_hash(style)}; "
                                   f"script-src {csp_hash(script)}",
    }  # fmt: skip


def artifact_headers(name: str, recording_id: str) -> dict[str, str]:
    """Headers of one served file: a report is a sandboxed page with inline images and no script."""
    headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{recording_id}-{name}")
    if name.endswith(".html"):
        headers["Content-Security-Policy"] = f"{_COMMON}; img-src data:; style-src {csp_hash(REPORT_STYLE)}; sandbox"
    else:
        headers["Content-Security-Policy"] = f"{_COMMON}; sandbox"
    headers["Content-Disposition"] = f'inline; filename="{safe_name}"'
    return headers


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")


@dataclass(frozen=True)
class Listing:
    """The readable manifests under an output, and what could not be read (URI, reason)."""

    manifests: list[Manifest]
    problems: list[tuple[str, str]]


class ManifestCache:
    """Parsed manifests by (URI, ETag, size, last modified): a request lists the folder once and
    reads only manifests that are new or changed since the last request. Ledger entries are cached
    the same way; a manifest the ledger does not vouch for (store/vouched.py) is named, not shown."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, Manifest | None, str | None, str, bool]] = {}
        self._ledger: dict = {}  # store.vouched.Vouching's cache
        self._lock = threading.Lock()
        self.reads = 0  # manifest bodies read, for tests and curiosity

    def listing(self, storage: Storage, out: str) -> Listing:
        manifests, problems, seen = [], [], set()
        vouching = Vouching(storage, out, deployment_keys(), self._ledger)  # entries are read once each
        for info in storage.list(join_uri(out, MANIFESTS)):
            if not info.uri.endswith(".json"):
                continue
            seen.add(info.uri)
            manifest, problem, sha256, declares = self._get(storage, info)
            problem = problem or vouching.problem_of(info.uri, sha256, declares)
            if problem:
                problems.append((info.uri, problem))
            else:
                manifests.append(manifest)
        with self._lock:
            for uri in set(self._entries) - seen:
                del self._entries[uri]
        return Listing(sorted(manifests, key=lambda m: (m.recording_id, m.finalized_at)), problems)

    def _get(self, storage: Storage, info: ObjectInfo) -> tuple[Manifest | None, str | None, str, bool]:
        version = (info.etag, info.size, info.last_modified)
        with self._lock:
            cached = self._entries.get(info.uri)
        if cached and cached[0] == version and info.etag:
            return cached[1:]
        self.reads += 1
        data = b""
        try:
            data = storage.read_bytes(info.uri)
            manifest, problem = _well_formed(load_manifest(data, info.uri)), None
        except (VigilError, ValueError, KeyError, TypeError) as exc:
            manifest, problem = None, str(exc)
        entry = (version, manifest, problem, hashlib.sha256(data).hexdigest(), declares_ledger(data))
        with self._lock:
            self._entries[info.uri] = entry
        return entry[1:]


def _well_formed(manifest: Manifest) -> Manifest:
    """The fields the page shows, with the types it relies on (else a ValueError naming one): a
    hand-written manifest may parse and still carry a list where a table of totals belongs."""
    shapes = {"recording_id": str, "totals": dict, "artifacts": dict, "params_fingerprint": str, "finalized_at": str}
    for key, kind in shapes.items():
        if not isinstance(getattr(manifest, key), kind):
            raise ValueError(f"manifest field {key!r} is not a {kind.__name__}")
    if not isinstance(manifest.source.uri, str):
        raise ValueError("manifest field 'source.uri' is missing")
    return manifest


def read_artifact(storage: Storage, out: str, entry: object) -> bytes:
    """The bytes of a manifest-listed file, only if they are what the manifest says they are."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not isinstance(entry.get("sha256"), str):
        raise IntegrityError("the manifest's entry for this file has no path and SHA-256")
    uri = join_uri(out, entry["path"])
    if not is_within(uri, out) or uri.rstrip("/") == out.rstrip("/"):
        raise IntegrityError(f"{entry['path']!r} is not a file under the output")
    data = _read_no_symlinks(out, uri) if parse_uri(uri).scheme == "file" else storage.read_bytes(uri)
    if hashlib.sha256(data).hexdigest() != entry["sha256"].lower():
        raise IntegrityError(f"{uri}: content does not match the SHA-256 its manifest lists (altered?); not served")
    return data


def _read_no_symlinks(out: str, uri: str) -> bytes:
    """Read a local file only if no component between the output folder and it is a symlink."""
    root, path = parse_uri(out).key, parse_uri(uri).key
    relative = os.path.relpath(path, root)
    if os.path.realpath(path) != os.path.join(os.path.realpath(root), relative):
        raise IntegrityError(f"{uri}: reached through a symlink; not served")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)  # and not replaced by one since the check
    except FileNotFoundError as exc:
        raise ObjectNotFound(f"{uri}: no such file") from exc
    except OSError as exc:  # ELOOP: the file itself is a symlink
        raise IntegrityError(f"{uri}: a symlink or unreadable ({exc.strerror}); not served") from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise IntegrityError(f"{uri}: not a regular file; not served")
        return handle.read()
