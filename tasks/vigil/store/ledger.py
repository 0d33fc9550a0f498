"""The case ledger: an append-only, hash-chained record of every manifest written to an output,
and of every clip record and review decision (``store.custody``: an entry's ``manifest`` field
holds any sealed record's path; the name stays so that older ledgers read the same).

One object per entry, ``OUT/ledger/<seq, 10 digits>.json``, published with a conditional create
(``write_bytes(..., if_absent=True)``: ``If-None-Match: *`` on S3, ``os.link`` on file://). Why one
object per entry rather than one file opened with ``O_APPEND``:

- it is the same on S3 (which has no append) and on file://, so one code path is tested;
- concurrent finalize tasks cannot interleave bytes: two writers racing for sequence number n
  both try to create ``n``; exactly one wins, the other re-reads the head and takes n+1;
- an entry, once written, is never opened for writing again (object lock / WORM buckets can
  enforce that); a rewritten or removed entry breaks the chain that follows it.

Each entry holds the manifest's path, SHA-256, signature and key fingerprint, the run id, the
time, and the SHA-256 of the previous entry's bytes. When a signing key is configured the entry
is signed too (``entry_signature``, over the entry without that field), so a ledger rewritten without the key (an entry dropped and
the chain recomputed) no longer verifies. A ledger cut short at its end is caught by comparing
its head with a copy kept elsewhere: every Airflow run puts its head in the asset event's extra
(``vigil verify --head SEQ:SHA256``), and any present manifest missing from the ledger fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from vigil.errors import IntegrityError
from vigil.store.layout import LEDGER
from vigil.store.signing import Signer, check
from vigil.store.storage import Storage
from vigil.uri import join_uri

GENESIS = "0" * 64
ATTEMPTS = 50  # racing writers: each lost race means another entry landed, so this is plenty


@dataclass(frozen=True)
class Entry:
    """One ledger line: a manifest as it was written, and the entry before it."""

    seq: int
    prev: str  # SHA-256 of the previous entry's bytes; GENESIS for the first
    manifest: str  # path relative to the output location
    manifest_sha256: str
    signature: str | None  # base64 Ed25519 signature of the manifest, None when unsigned
    key_fingerprint: str | None
    run_id: str
    time: str  # ISO 8601, UTC
    entry_signature: str | None = None  # base64 Ed25519 over body_bytes(), None when unsigned

    def body_bytes(self) -> bytes:
        """What the entry signature covers: every field but the signature itself."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "entry_signature"}, sort_keys=True).encode()

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class Head:
    """The last entry: its sequence number and the SHA-256 of its bytes."""

    seq: int
    sha256: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.sha256}"

    @classmethod
    def parse(cls, text: str) -> "Head":
        seq, _, digest = text.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise ValueError(f"a ledger head is SEQ:SHA256 (as in the Airflow asset event), got {text!r}")
        return cls(int(seq), digest)


def entry_uri(out: str, seq: int) -> str:
    return join_uri(out, LEDGER, f"{seq:010d}.json")


def run_id() -> str:
    """The Airflow run id when running as a task (Airflow exports it), else a fresh CLI run id."""
    return os.environ.get("AIRFLOW_CTX_DAG_RUN_ID") or f"cli-{uuid.uuid4().hex[:12]}"


def read_all(storage: Storage, out: str) -> list[tuple[str, bytes]]:
    """Every entry object's URI and bytes, in name (= sequence) order."""
    return [(uri, storage.read_bytes(uri)) for uri in _entry_uris(storage, out)]


def _entry_uris(storage: Storage, out: str) -> list[str]:
    return sorted(i.uri for i in storage.list(join_uri(out, LEDGER)) if i.uri.endswith(".json"))


def parse(data: bytes, uri: str) -> Entry:
    try:
        return Entry(**json.loads(data))
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"{uri}: not a ledger entry ({exc})") from exc


def head(storage: Storage, out: str) -> Head | None:
    """The last entry (one listing, one read: appending does not re-read the whole ledger)."""
    uris = _entry_uris(storage, out)
    if not uris:
        return None
    data = storage.read_bytes(uris[-1])
    return Head(parse(data, uris[-1]).seq, hashlib.sha256(data).hexdigest())


def last_entry(storage: Storage, out: str) -> Entry | None:
    """The newest entry, or None for an output without a ledger."""
    uris = _entry_uris(storage, out)
    return parse(storage.read_bytes(uris[-1]), uris[-1]) if uris else None


def append(storage: Storage, out: str, manifest_path: str, manifest_sha256: str, signature: bytes | None,
           signer: Signer | None, run: str) -> Head:  # fmt: skip
    """Add an entry after the current head; retry on a lost race. Returns the new head."""
    for _ in range(ATTEMPTS):
        last = head(storage, out)
        entry = Entry(
            seq=(last.seq + 1) if last else 1,
            prev=last.sha256 if last else GENESIS,
            manifest=manifest_path,
            manifest_sha256=manifest_sha256,
            signature=base64.b64encode(signature).decode() if signature else None,
            key_fingerprint=signer.fingerprint if signer and signature else None,
            run_id=run,
            time=datetime.now(timezone.utc).isoformat(),
        )
        if signer is not None:  # inside the object: entry and signature appear in one atomic create
            entry = replace(entry, entry_signature=base64.b64encode(signer.sign(entry.body_bytes())).decode())
        data = entry.to_bytes()
        if storage.write_bytes(entry_uri(out, entry.seq), data, if_absent=True):
            return Head(entry.seq, hashlib.sha256(data).hexdigest())
    raise IntegrityError(f"{join_uri(out, LEDGER)}: could not append after {ATTEMPTS} attempts (too many writers?)")


@dataclass
class LedgerCheck:
    """What the ledger says is current, and what is wrong with it."""

    latest: dict[str, Entry]  # manifest path -> its newest entry
    head: Head | None
    problems: list[str]


def check_chain(storage: Storage, out: str, keys: dict | None, expected_head: Head | None = None) -> LedgerCheck:
    """Walk the chain from the first entry: numbering, links, and (with ``keys``) signatures."""
    problems: list[str] = []
    latest: dict[str, Entry] = {}
    prev, last = GENESIS, None
    for index, (uri, data) in enumerate(read_all(storage, out), 1):
        try:
            entry = parse(data, uri)
        except IntegrityError as exc:
            problems.append(str(exc))
            break
        if entry.seq != index or not uri.endswith(f"{index:010d}.json"):
            problems.append(f"{uri}: entry {entry.seq} where entry {index} belongs (an entry was removed or renamed)")
        if entry.prev != prev:
            problems.append(f"{uri}: does not follow the entry before it (the ledger was rewritten)")
        if keys is not None:
            problems.extend(entry_signature_problems(uri, entry, keys))
        latest[entry.manifest] = entry
        prev, last = hashlib.sha256(data).hexdigest(), Head(entry.seq, hashlib.sha256(data).hexdigest())
    if expected_head is not None:
        found = _entry_hash(storage, out, expected_head.seq)
        if found != expected_head.sha256:
            what = "is missing (the ledger was truncated)" if found is None else "differs (the ledger was rewritten)"
            problems.append(f"{entry_uri(out, expected_head.seq)}: the recorded head {expected_head} {what}")
    return LedgerCheck(latest, last, problems)


def _entry_hash(storage: Storage, out: str, seq: int) -> str | None:
    from vigil.errors import ObjectNotFound

    try:
        return hashlib.sha256(storage.read_bytes(entry_uri(out, seq))).hexdigest()
    except ObjectNotFound:
        return None


def entry_signature_problems(uri: str, entry: Entry, keys: dict) -> list[str]:
    """What is wrong with an entry's own signature, given the trusted ``keys`` (nothing: it is theirs)."""
    if not entry.entry_signature:
        return [f"{uri}: ledger entry is not signed"]
    if check(entry.body_bytes(), base64.b64decode(entry.entry_signature), keys, entry.key_fingerprint) is None:
        return [f"{uri}: ledger entry's signature is not from a trusted key (or the entry was altered)"]
    return []
