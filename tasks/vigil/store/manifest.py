"""Manifests: the per-recording record of what was written, and ``vigil verify``.

A manifest lists every output file of a recording — by its path relative to the output location,
so an output can be copied or handed over as a whole — with its SHA-256, row count and time range, and
the recording's coverage (what was analysed, what could not be decoded, where it has no frames).
It carries its own hash (``manifest_sha256``, over its canonical JSON without that field) and is
stored in exactly that canonical form, so any changed byte of it is detected too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from fractions import Fraction

from vigil.errors import IntegrityError
from vigil.store.schema import ALL_TABLES, DERIVED_TABLES, MANIFESTS, TABLES
from vigil.store.storage import Storage
from vigil.uri import join_uri

HASH_FIELD = "manifest_sha256"


def manifest_bytes(manifest: dict) -> bytes:
    """The canonical, self-hashed serialization of a manifest."""
    body = {k: v for k, v in manifest.items() if k != HASH_FIELD}
    sealed = {**body, HASH_FIELD: hashlib.sha256(_canonical(body)).hexdigest()}
    return _canonical(sealed)


def _canonical(value: dict) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"


def relative_entry(entry: dict, out: str) -> dict:
    """A published file's manifest entry, its URI made relative to the output location."""
    prefix = out.rstrip("/") + "/"
    if not entry["uri"].startswith(prefix):
        raise ValueError(f"{entry['uri']} is not under the output location {out}")
    return {"path": entry["uri"][len(prefix):], **{k: v for k, v in entry.items() if k != "uri"}}


def file_uris(manifest: dict, out: str, table: str) -> list[str]:
    """The URIs of one table's files listed by a manifest, resolved against where the output is now."""
    if table in manifest.get("derived", {}):
        return [join_uri(out, manifest["derived"][table]["path"])]
    if table in DERIVED_TABLES:
        return []  # a derived table this recording lacks (track_appearance when frames were unreadable)
    return [join_uri(out, shard["files"][table]["path"]) for shard in sorted(manifest["shards"], key=lambda s: s["index"])]


def sealed_records(storage: Storage, prefix_uri: str) -> list[dict]:
    """Every sealed JSON record under a prefix (clip records, review decisions); an altered one is
    a ``ManifestError`` naming it."""
    return [load_manifest(storage.read_bytes(i.uri), i.uri) for i in storage.list(prefix_uri) if i.uri.endswith(".json")]


def load_manifest(data: bytes, uri: str) -> dict:
    """Parse a manifest, refusing one whose bytes are not exactly what vigil wrote."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{uri}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or HASH_FIELD not in manifest:
        raise ManifestError(f"{uri}: not a vigil manifest (no {HASH_FIELD})")
    if manifest_bytes(manifest) != data:
        raise ManifestError(f"{uri}: content does not match its own hash (the manifest was altered)")
    return manifest


class ManifestError(IntegrityError):
    """A manifest is unreadable or has been altered."""


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(storage: Storage, out: str) -> Report:
    """Re-hash every file against its manifest and check that shards tile each recording."""
    report = Report()
    manifest_infos = [i for i in storage.list(join_uri(out, MANIFESTS)) if i.uri.endswith(".json")]
    listed: set[str] = set()
    recordings: set[str] = set()
    for info in manifest_infos:
        try:
            manifest = load_manifest(storage.read_bytes(info.uri), info.uri)
        except ManifestError as exc:
            report.problems.append(str(exc))
            recordings.add(info.uri.rsplit("/", 1)[-1].removesuffix(".json"))
            continue
        recordings.add(manifest["recording_id"])
        report.checked.append(info.uri)
        _check_tiling(manifest, info.uri, report)
        entries = [shard["files"][table] for shard in manifest["shards"] for table in TABLES]
        entries += list(manifest.get("derived", {}).values()) + list(manifest.get("artifacts", {}).values())
        for entry in entries:
            uri = join_uri(out, entry["path"])
            listed.add(uri)
            _check_file(storage, uri, entry, report)

    # Output files no manifest lists: harmless leftovers of a superseded run when their
    # recording has a manifest; a sign of a removed manifest when it has none.
    for table in ALL_TABLES:
        for info in storage.list(join_uri(out, table)):
            if info.uri in listed or not info.uri.endswith(".parquet"):
                continue
            recording = _partition_value(info.uri)
            if recording in recordings:
                report.notes.append(f"{info.uri}: not listed by its recording's manifest (superseded; ignored by readers)")
            else:
                report.problems.append(f"{info.uri}: output file of recording {recording!r}, which has no manifest")
    if not manifest_infos:
        report.problems.append(f"{join_uri(out, MANIFESTS)}: no manifest found; is this a vigil output location?")
    return report


def _check_file(storage: Storage, uri: str, entry: dict, report: Report) -> None:
    from vigil.errors import ObjectNotFound
    from vigil.store.sink import describe

    try:
        data = storage.read_bytes(uri)
    except ObjectNotFound:
        report.problems.append(f"{uri}: listed in the manifest but missing")
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry["sha256"]:
        report.problems.append(f"{uri}: SHA-256 is {actual}, the manifest says {entry['sha256']}")
        return
    if "rows" in entry and describe(uri, data).rows != entry["rows"]:
        report.problems.append(f"{uri}: row count differs from the manifest's {entry['rows']}")
        return
    report.checked.append(uri)


def _check_tiling(manifest: dict, uri: str, report: Report) -> None:
    shards = sorted(manifest["shards"], key=lambda s: s["index"])
    if [s["index"] for s in shards] != list(range(len(shards))):
        report.problems.append(f"{uri}: shard indices {[s['index'] for s in shards]} are not 0..{len(shards) - 1}")
    cursor = Fraction(0)
    for shard in shards:
        start, end = Fraction(shard["start"]), Fraction(shard["end"])
        if start != cursor:
            kind = "gap" if start > cursor else "overlap"
            report.problems.append(f"{uri}: {kind} before shard {shard['index']} ({float(cursor)} s to {float(start)} s)")
        if end <= start:
            report.problems.append(f"{uri}: shard {shard['index']} is empty or reversed")
        cursor = end
    if cursor != Fraction(manifest["duration"]):
        report.problems.append(f"{uri}: shards end at {float(cursor)} s, the recording at {manifest['duration_s']} s")


def _partition_value(uri: str) -> str | None:
    for part in uri.split("/"):
        if part.startswith("recording_id="):
            return part.split("=", 1)[1]
    return None
