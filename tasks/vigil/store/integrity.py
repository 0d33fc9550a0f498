"""``vigil verify`` without keys: every file an output's manifests list re-hashed, the shards of
each recording tiling it, output files no manifest lists, and the MP4 index copies.

What a signed output adds (signatures, the ledger, timestamps) is ``store.custody.check``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from fractions import Fraction

from vigil.store.commit import check_against_manifest
from vigil.store.layout import INDEXES, manifest_recording, partition_value
from vigil.store.manifest import Manifest, read_manifests
from vigil.store.schema import ALL_TABLES, MANIFESTS
from vigil.store.storage import Storage
from vigil.uri import join_uri


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
    listing = read_manifests(storage, out)
    listed: set[str] = set()
    recordings: set[str] = set()
    for uri, problem in listing.problems:
        report.problems.append(problem)
        recordings.add(manifest_recording(uri))
    for uri, manifest in listing.found:
        recordings.add(manifest.recording_id)
        report.checked.append(uri)
        _check_tiling(manifest, uri, report)
        for shard in manifest.shards:  # a shard's tables are the ones its commit marker names
            marker, problem = check_against_manifest(storage, out, shard.files)
            report.problems.extend([problem] if problem else [])
            report.checked.extend([marker] if marker and not problem else [])
        for entry in manifest.entries():
            file_uri = join_uri(out, entry["path"])
            listed.add(file_uri)
            _check_file(storage, file_uri, entry, report)

    # Output files no manifest lists: harmless leftovers of a superseded run when their
    # recording has a manifest; a sign of a removed manifest when it has none.
    for table in ALL_TABLES:
        for info in storage.list(join_uri(out, table)):
            if info.uri in listed or not info.uri.endswith(".parquet"):
                continue
            recording = partition_value(info.uri)
            if recording in recordings:
                report.notes.append(f"{info.uri}: not listed by its recording's manifest (superseded; ignored by readers)")
            else:
                report.problems.append(f"{info.uri}: output file of recording {recording!r}, which has no manifest")
    for info in storage.list(join_uri(out, INDEXES)):  # index copies (store/index_copy.py): a cache, but
        _check_index_copy(storage, info, report)  # one someone changed means the output store was tampered with
    if not listing.found and not listing.problems:
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


def _check_index_copy(storage: Storage, info, report: Report) -> None:
    """A copy of an MP4 index must hash to its own name. vigil never uses one that does not, and a
    missing copy only costs reading the index from the recording again, so only a change is a problem."""
    from vigil.media.containers import MAX_INDEX_BYTES

    name = info.uri.rsplit("/", 1)[-1].removesuffix(".moov")
    if info.size > MAX_INDEX_BYTES or hashlib.sha256(storage.read_bytes(info.uri)).hexdigest() != name:
        report.problems.append(f"{info.uri}: altered: not the index copy its name says (vigil does not use it; "
                               "the output store was written to by someone else)")  # fmt: skip
    else:
        report.checked.append(info.uri)


def _check_tiling(manifest: Manifest, uri: str, report: Report) -> None:
    shards = manifest.shards
    if [s.index for s in shards] != list(range(len(shards))):
        report.problems.append(f"{uri}: shard indices {[s.index for s in shards]} are not 0..{len(shards) - 1}")
    cursor = Fraction(0)
    for shard in shards:
        if shard.start != cursor:
            kind = "gap" if shard.start > cursor else "overlap"
            report.problems.append(f"{uri}: {kind} before shard {shard.index} ({float(cursor)} s to {float(shard.start)} s)")
        if shard.end <= shard.start:
            report.problems.append(f"{uri}: shard {shard.index} is empty or reversed")
        cursor = shard.end
    if cursor != manifest.duration:
        report.problems.append(f"{uri}: shards end at {float(cursor)} s, the recording at {manifest.duration_s} s")
