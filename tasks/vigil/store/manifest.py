"""Manifests: the per-recording record of what was written (``store.integrity`` checks them).

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

from vigil.errors import ManifestError
from vigil.store.contracts import SourceVersion
from vigil.store.layout import manifest_uris
from vigil.store.schema import DERIVED_TABLES, STATUSES, TABLES
from vigil.store.storage import Storage
from vigil.uri import join_uri

HASH_FIELD = "manifest_sha256"
MANIFEST_VERSION = 2  # 2: per-shard runtime, ``runtimes`` and ``run_key``; version 1 is read too


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


def merge_coverage(ranges) -> list[list]:
    """Join adjacent ``[start_s, end_s, status]`` ranges of the same status (across shards)."""
    merged: list[list] = []
    for lo, hi, status in sorted(ranges):
        if merged and merged[-1][2] == status and abs(merged[-1][1] - lo) < 1e-9:
            merged[-1][1] = hi
        else:
            merged.append([lo, hi, status])
    return merged


@dataclass(frozen=True)
class ManifestShard:
    """One shard as a manifest lists it: its exact range, files (paths relative to the output), coverage."""

    index: int
    start: Fraction
    end: Fraction
    files: dict[str, dict]  # table -> {"path", "sha256", "rows", "bytes"}
    coverage: list[list]  # [start_s, end_s, status]
    runtime: str | None = None  # absent in version-1 manifests

    def to_dict(self) -> dict:
        values = {"index": self.index, "start": str(self.start), "end": str(self.end), "start_s": float(self.start),
                  "end_s": float(self.end), "files": self.files, "coverage": self.coverage}  # fmt: skip
        return values if self.runtime is None else {**values, "runtime": self.runtime}

    @classmethod
    def from_dict(cls, values: dict) -> "ManifestShard":
        return cls(int(values["index"]), Fraction(values["start"]), Fraction(values["end"]), values["files"],
                   values["coverage"], values.get("runtime"))  # fmt: skip


@dataclass(frozen=True)
class Manifest:
    """The per-recording record of one run: what was analysed, how, and every file it wrote."""

    recording_id: str
    source: SourceVersion
    duration: Fraction  # exact, seconds
    frame_count: int
    probe: dict  # the stream's timing: enough to find any frame again (vigil report)
    warnings: list[str]
    params: dict
    params_fingerprint: str
    model: dict
    runtimes: list[str]  # every runtime that computed a shard, sorted (NVDEC and CPU may alternate)
    recording_start: str | None
    shards: list[ManifestShard]
    derived: dict[str, dict]  # table -> relative entry
    totals: dict
    finalized_at: str
    vigil_version: str
    schema_version: int
    artifacts: dict[str, dict] = field(default_factory=dict)  # review file name -> relative entry
    run_key: str | None = None  # absent in version-1 manifests
    version: int = MANIFEST_VERSION

    @property
    def coverage(self) -> list[list]:
        """The recording's ``[start_s, end_s, status]`` ranges, joined across shards."""
        return merge_coverage(c for shard in self.shards for c in shard.coverage)

    @property
    def duration_s(self) -> float:
        return float(self.duration)

    def status_seconds(self) -> dict[str, float]:
        return {f"{status}_seconds": round(sum(hi - lo for lo, hi, s in self.coverage if s == status), 3)
                for status in STATUSES}  # fmt: skip

    def to_dict(self) -> dict:
        values = {
            "schema_version": self.schema_version, "recording_id": self.recording_id, "source": self.source.to_dict(),
            "duration": str(self.duration), "duration_s": self.duration_s, "frame_count": self.frame_count,
            "probe": self.probe, "warnings": self.warnings, "params": self.params,
            "params_fingerprint": self.params_fingerprint, "model": self.model, "recording_start": self.recording_start,
            "shards": [s.to_dict() for s in self.shards], "coverage": self.coverage, "derived": self.derived,
            "totals": self.totals, "artifacts": self.artifacts, "finalized_at": self.finalized_at,
            "vigil_version": self.vigil_version,
        }  # fmt: skip
        if self.version == 1:
            return {**values, "runtime": self.runtimes[0]}
        return {**values, "manifest_version": self.version, "runtimes": self.runtimes, "run_key": self.run_key}

    @classmethod
    def from_dict(cls, values: dict) -> "Manifest":
        """A manifest of this version or version 1 (one ``runtime``, no ``run_key``)."""
        version = int(values.get("manifest_version", 1))
        return cls(
            recording_id=values["recording_id"], source=SourceVersion.from_dict(values["source"]),
            duration=Fraction(values["duration"]), frame_count=int(values["frame_count"]), probe=values["probe"],
            warnings=list(values.get("warnings", [])), params=values["params"],
            params_fingerprint=values["params_fingerprint"], model=values["model"],
            runtimes=list(values["runtimes"]) if "runtimes" in values else [values["runtime"]],
            recording_start=values.get("recording_start"),
            shards=sorted((ManifestShard.from_dict(s) for s in values["shards"]), key=lambda s: s.index),
            derived=values.get("derived", {}), totals=values["totals"], finalized_at=values["finalized_at"],
            vigil_version=values["vigil_version"], schema_version=int(values["schema_version"]),
            artifacts=values.get("artifacts", {}), run_key=values.get("run_key"), version=version,
        )  # fmt: skip

    def entries(self) -> list[dict]:
        """Every file the manifest lists: shard files, derived tables, review artifacts."""
        return [s.files[t] for s in self.shards for t in TABLES] + [*self.derived.values(), *self.artifacts.values()]


def file_uris(manifest: Manifest, out: str, table: str) -> list[str]:
    """The URIs of one table's files listed by a manifest, resolved against where the output is now."""
    if table in manifest.derived:
        return [join_uri(out, manifest.derived[table]["path"])]
    if table in DERIVED_TABLES:
        return []  # a derived table this recording lacks (track_appearance when frames were unreadable)
    return [join_uri(out, shard.files[table]["path"]) for shard in manifest.shards]


def load_manifest(data: bytes, uri: str) -> Manifest:
    """Parse a manifest, refusing one whose bytes are not exactly what vigil wrote."""
    return Manifest.from_dict(load_sealed(data, uri))


def load_sealed(data: bytes, uri: str) -> dict:
    """A manifest's JSON, checked against its own hash."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{uri}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or HASH_FIELD not in manifest:
        raise ManifestError(f"{uri}: not a vigil manifest (no {HASH_FIELD})")
    if manifest_bytes(manifest) != data:
        raise ManifestError(f"{uri}: content does not match its own hash (the manifest was altered)")
    return manifest


@dataclass(frozen=True)
class Listing:
    """The manifests under an output location, and the ones that could not be read (and why)."""

    found: list[tuple[str, Manifest]]
    problems: list[tuple[str, str]]  # (manifest URI, what is wrong with it)


def read_manifests(storage: Storage, out: str) -> Listing:
    """Every manifest under ``out``; one that is altered or unreadable is reported, never allowed to
    hide the others."""
    found, problems = [], []
    for uri in manifest_uris(storage, out):
        try:
            found.append((uri, load_manifest(storage.read_bytes(uri), uri)))
        except (ManifestError, KeyError, TypeError, ValueError) as exc:
            problems.append((uri, str(exc) if isinstance(exc, ManifestError) else f"{uri}: not a readable manifest ({exc!r})"))
    return Listing(found, problems)
