"""``vigil export``: an evidence package that verifies on its own, wherever it is moved.

The package keeps the output's own layout (so ``vigil verify`` reads it like any output): the
selected recordings' manifests and files, their clips and review decisions with the records,
signatures and timestamp tokens that vouch for them, and the whole ledger. It adds
what a recipient needs without vigil: the public key(s), the TSA roots, ``SHA256SUMS``, a
``VERIFY.txt`` of standard commands and a ``PROCESSING.md`` saying what was done to which source.
Every file is checked against its manifest while it is copied: an altered output is refused,
not packaged. Texts are built in ``store.package_docs``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from vigil.errors import ObjectNotFound, ParameterError
from vigil.store import custody, ledger, signing, timestamps
from vigil.store.layout import commit_path_of, partition_value, sealed_record_uris
from vigil.store.manifest import load_sealed
from vigil.store.package_docs import processing_md, verify_txt
from vigil.store.schema import MANIFESTS
from vigil.store.sink import read_provenance
from vigil.store.storage import Storage, storage_for
from vigil.store.verified import read_verified
from vigil.store.vouched import Vouching, deployment_keys
from vigil.uri import file_uri, join_uri

log = logging.getLogger(__name__)


def export(out: str, to: str, recordings: list[str] | None = None, conn_id: str | None = None) -> str:
    """Copy the selected recordings (all by default) of ``out`` into a new package at ``to``."""
    dest = to if "://" in to else file_uri(Path(to))
    source, target = storage_for(out, conn_id), storage_for(dest, conn_id)
    if target.list(dest):
        raise ParameterError(f"{dest} is not empty: an evidence package goes into a new folder or prefix")
    vouching = Vouching(source, out, deployment_keys())  # only what the ledger vouches for is packaged
    chosen = _select(source, out, recordings or [], vouching)
    entries = ledger.read_all(source, out)
    latest = {entry.manifest: entry for entry in (ledger.parse(data, uri) for uri, data in entries)}
    sums, fingerprints, provenance = [], set(), {}

    def copy(path: str, data: bytes) -> None:
        target.write_bytes(join_uri(dest, path), data)

    def copy_sealed(path: str, data: bytes, listed: list[dict]) -> None:
        """A record with its signature and tokens, and every file it lists, checked as it is copied."""
        copy(path, data)
        for suffix in (signing.SIG_SUFFIX, signing.KEY_NAME_SUFFIX):
            _copy_if_present(source, target, out, dest, path + suffix)
        for token in _tokens(source, join_uri(out, path)):
            copy(token[len(out.rstrip("/")) + 1:], source.read_bytes(token))
        for entry in listed:
            data = read_verified(source, join_uri(out, entry["path"]), entry["sha256"])
            copy(entry["path"], data)
            sums.append(f"{entry['sha256']}  {entry['path']}")
            if entry["path"].endswith(".parquet") and "/shard-" in entry["path"]:
                provenance.setdefault(path, read_provenance(data))  # software versions, Airflow run
        for marker in {commit_path_of(e["path"]) for shard in manifest["shards"] for e in shard["files"].values()} - {None}:
            _copy_if_present(source, target, out, dest, marker)  # verify checks it against the manifest
        if path in latest and latest[path].key_fingerprint:
            fingerprints.add(latest[path].key_fingerprint)

    for path, manifest, data in chosen:
        copy_sealed(path, data, _listed(manifest))
    records = _records(source, out, {m["recording_id"] for _, m, _ in chosen}, vouching)
    for path, record, data in records:
        copy_sealed(path, data, _record_files(record))
    for uri, data in entries:  # the whole chain: an excerpt could not show that nothing was cut
        copy(uri[len(out.rstrip("/")) + 1:], data)
    keys = _copy_keys(source, target, out, dest, fingerprints)
    roots = b"".join(Path(p).read_bytes() for p in timestamps.configured_root_paths())
    if roots:
        copy("tsa-roots.pem", roots)
    copy("SHA256SUMS", "".join(line + "\n" for line in sorted(set(sums), key=lambda s: s[66:])).encode())
    selection = {
        "manifests": [path for path, _, _ in chosen],
        "records": [path for path, _, _ in records],  # clip records and review decisions
        "recordings": [m["recording_id"] for _, m, _ in chosen],
        "exported_from": out,
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "ledger_head": str(ledger.head(source, out)) if entries else None,
    }
    copy(custody.SELECTION, json.dumps(selection, indent=2, sort_keys=True).encode() + b"\n")
    copy("VERIFY.txt", verify_txt(sorted(keys), bool(roots), selection["ledger_head"]).encode())
    copy("PROCESSING.md", processing_md([(p, m) for p, m, _ in chosen], latest, entries, provenance,
                                        [(p, r) for p, r, _ in records]).encode())  # fmt: skip
    return dest


def _select(storage: Storage, out: str, wanted: list[str], vouching: Vouching) -> list[tuple[str, dict, bytes]]:
    chosen = []
    for info in sorted(storage.list(join_uri(out, MANIFESTS)), key=lambda i: i.uri):
        if not info.uri.endswith(".json"):
            continue
        data = storage.read_bytes(info.uri)
        if (problem := vouching.problem(info.uri, data)) is not None:
            log.warning("not packaged: %s", problem)
            continue
        manifest = load_sealed(data, info.uri)  # the JSON as written (PROCESSING.md reads it)
        rid = manifest["recording_id"]
        if not wanted or any(rid == w or rid.startswith(w + "-") for w in wanted):
            chosen.append((info.uri[len(out.rstrip("/")) + 1:], manifest, data))
    found = {m["recording_id"] for _, m, _ in chosen}
    unknown = [w for w in wanted if not any(r == w or r.startswith(w + "-") for r in found)]
    if unknown or not chosen:
        raise ParameterError(f"no recording {unknown or ''} under {out}; `vigil query recordings {out}` lists them")
    return chosen


def _records(storage: Storage, out: str, recordings: set[str], vouching: Vouching) -> list[tuple[str, dict, bytes]]:
    """The clip records and review decisions of the chosen recordings that the ledger vouches for."""
    found = []
    for uri in sealed_record_uris(storage, out):
        if partition_value(uri) in recordings and not uri.startswith(join_uri(out, MANIFESTS)):
            data = storage.read_bytes(uri)
            if (problem := vouching.problem(uri, data)) is not None:
                log.warning("not packaged: %s", problem)
                continue
            found.append((uri[len(out.rstrip("/")) + 1:], load_sealed(data, uri), data))
    return found


def _record_files(record: dict) -> list[dict]:
    """What a clip record or review decision vouches for by hash: the clip, a CVAT attachment."""
    if "clip_path" in record:
        return [{"path": record["clip_path"], "sha256": record["clip_sha256"]}]
    return [record["attachment"]] if record.get("attachment") else []


def _tokens(storage: Storage, manifest_uri: str) -> list[str]:
    prefix = manifest_uri + ".tsa-"
    return [i.uri for i in storage.list(manifest_uri.rsplit("/", 1)[0]) if i.uri.startswith(prefix)]


def _listed(manifest: dict) -> list[dict]:
    entries = [shard["files"][t] for shard in manifest["shards"] for t in sorted(shard["files"])]
    return entries + list(manifest.get("derived", {}).values()) + list(manifest.get("artifacts", {}).values())


def _copy_if_present(source: Storage, target: Storage, out: str, dest: str, path: str) -> bool:
    try:
        data = source.read_bytes(join_uri(out, path))
    except ObjectNotFound:
        return False
    target.write_bytes(join_uri(dest, path), data)
    return True


def _copy_keys(source: Storage, target: Storage, out: str, dest: str, fingerprints: set[str]) -> dict[str, str]:
    """Public keys of the signers, checked against their fingerprints; ``pub.pem`` when only one."""
    keys = {}
    for fp in sorted(fingerprints):
        path = custody.key_uri(out, fp)[len(out.rstrip("/")) + 1:]
        try:
            pem = source.read_bytes(join_uri(out, path))
        except ObjectNotFound:
            raise ParameterError(f"{join_uri(out, path)}: the public key of signer {fp} is missing") from None
        if signing.fingerprint(signing.load_public_key(pem, path)) != fp:
            raise ParameterError(f"{join_uri(out, path)}: is not the key {fp} (replaced?)")
        target.write_bytes(join_uri(dest, path), pem)
        keys[fp] = path
    if len(keys) == 1:
        target.write_bytes(join_uri(dest, "pub.pem"), source.read_bytes(join_uri(out, next(iter(keys.values())))))
    return keys
