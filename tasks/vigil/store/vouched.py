"""The records a reader may rely on: those the case ledger vouches for.

Anyone who can write to the output store can write a manifest that seals itself (its hash is over
its own content) and lists Parquet files with their true hashes. ``vigil verify --trust`` catches
that, but queries, reports, the case view, clips, exports, the Airflow page and the nightly's
"already processed" check read manifests too, and clip records and review decisions. They take a
record only where the ledger vouches for it: the ledger is walked from its first entry as
``vigil verify`` walks it (numbering, each entry linked to the one before, and, with trusted keys,
each entry signed by one of them), and the newest entry for the record's path must record exactly
its bytes. Any other record is left out and named (run ``vigil verify``): a forged manifest can
neither add a recording to an answer, shadow a real one with a later run, nor stop a recording from
being processed; a forged decision is not shown. Entries after a break in the chain vouch for
nothing.

Trusted keys (``deployment_keys``): the public keys in ``VIGIL_TRUSTED_KEYS`` (PEM files, comma
separated: the current key and retired ones, for readers that do not hold the private key) and
the public half of ``VIGIL_SIGNING_KEY`` where it is configured. Without any, nothing is
authenticated: a forger who also rewrites the ledger is caught only by ``vigil verify --trust``
(the readers warn). An output written before it had a ledger has none: where no key is trusted,
its records that do not say they were entered in a ledger are read as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import lru_cache
from typing import Callable

from vigil.errors import IntegrityError, VigilError
from vigil.store import ledger
from vigil.store.layout import LEDGER, manifest_uris, relative_path
from vigil.store.manifest import Listing, ManifestError, load_manifest, load_sealed
from vigil.store.signing import KEY_CONN_ENV, KEY_ENV, configured_signer, load_keyring
from vigil.store.storage import Storage
from vigil.uri import join_uri, normalise_uri

log = logging.getLogger(__name__)

TRUSTED_KEYS_ENV = "VIGIL_TRUSTED_KEYS"
MAX_ENTRY_BYTES = 64 << 10  # a ledger entry is a few hundred bytes
_UNAUTHENTICATED: set[str] = set()  # outputs read without a trusted key, warned about


def deployment_keys() -> dict | None:
    """The public keys readers trust, by fingerprint; None where none is configured. Read once per
    process and setting (a reader such as the Airflow page asks on every request)."""
    names = (TRUSTED_KEYS_ENV, KEY_ENV, KEY_CONN_ENV)
    return _keys(tuple(os.environ.get(name, "") for name in names))


@lru_cache(maxsize=4)
def _keys(settings: tuple[str, str, str]) -> dict | None:
    trusted, key_file, key_conn = settings
    keys = load_keyring([p.strip() for p in trusted.split(",") if p.strip()])
    if (signer := configured_signer({KEY_ENV: key_file, KEY_CONN_ENV: key_conn})) is not None:
        keys[signer.fingerprint] = signer.public_key
    return keys or None


class Vouching:
    """The ledger's word on one output's records, read once. ``cache`` (entry URI and version ->
    parsed entry) spares a long-lived reader (the Airflow page) re-reading entries that did not
    change; it is pruned to the entries present."""

    def __init__(self, storage: Storage, out: str, keys: dict | None, cache: dict | None = None) -> None:
        self.out, self.keys = normalise_uri(out), keys
        self.newest: dict[str, ledger.Entry] = {}  # path -> its newest entry in the unbroken chain
        self.broken: str | None = None
        try:
            infos = sorted((i for i in storage.list(join_uri(out, LEDGER)) if i.uri.endswith(".json")), key=lambda i: i.uri)
        except VigilError as exc:
            infos, self.broken = [], f"the ledger cannot be listed ({exc})"
        self.has_ledger = bool(infos) or self.broken is not None
        seen, prev = set(), ledger.GENESIS
        for index, info in enumerate(infos, 1):
            version = (info.uri, info.etag, info.size)
            seen.add(version)
            read = cache.get(version) if cache is not None else None
            if read is None:
                read = _read_entry(storage, info)
                if cache is not None:
                    cache[version] = read
            entry, digest = read
            problem = digest if entry is None else _link_problem(info.uri, index, entry, prev, keys)
            if problem:
                self.broken = f"{info.uri}: {problem}"
                log.warning("ledger of %s broken at %s: records entered from there on are not vouched for "
                            "(run vigil verify)", out, self.broken)  # fmt: skip
                break
            self.newest[entry.manifest] = entry
            prev = digest
        if cache is not None:
            for stale in set(cache) - seen:
                cache.pop(stale, None)
        if keys is None and self.newest and self.out not in _UNAUTHENTICATED:
            _UNAUTHENTICATED.add(self.out)  # once per process and output: the page asks on every request
            log.warning("%s: no trusted key configured (%s): records are checked against the ledger, but the ledger "
                        "itself is not authenticated", out, TRUSTED_KEYS_ENV)  # fmt: skip

    def entered(self, uri: str) -> bool:
        """Whether the unbroken ledger has an entry for the record at ``uri``."""
        try:
            return relative_path(normalise_uri(uri), self.out) in self.newest
        except (ValueError, VigilError):
            return False

    def problem(self, uri: str, data: bytes) -> str | None:
        """Why the record at ``uri`` with these bytes is not vouched for, or None."""
        return self.problem_of(uri, hashlib.sha256(data).hexdigest(), declares_ledger(data))

    def problem_of(self, uri: str, sha256: str, declares: bool) -> str | None:
        """``problem`` from the record's SHA-256 and whether it says it was entered in a ledger."""
        try:
            path = relative_path(normalise_uri(uri), self.out)
        except (ValueError, VigilError):
            return f"{uri}: not under the output location {self.out}"
        entry = self.newest.get(path)
        if entry is None:
            if not self.has_ledger and not declares and self.keys is None:
                return None  # written before outputs had a ledger
            if self.broken:
                return f"{uri}: not vouched for: the ledger is broken at {self.broken}"
            return f"{uri}: not recorded in the ledger (not written by vigil?)"
        if entry.manifest_sha256 != sha256:
            return f"{uri}: not the record the ledger entered in entry {entry.seq}: altered after it was written"
        return None


def vouched_manifests(storage: Storage, out: str, keys: dict | None = None) -> Listing:
    """Every manifest under ``out`` that the ledger vouches for (``keys``: the deployment's, by
    default); the others, and unreadable ones, with the reason, never hiding the rest."""
    vouching = Vouching(storage, out, deployment_keys() if keys is None else keys)
    found, problems = [], []
    for uri in manifest_uris(storage, out):
        try:
            data = storage.read_bytes(uri)
            manifest = load_manifest(data, uri)
        except (VigilError, KeyError, TypeError, ValueError, RecursionError) as exc:
            problems.append((uri, str(exc) if isinstance(exc, ManifestError) else f"{uri}: not a readable manifest ({exc!r})"))
            continue
        if (problem := vouching.problem(uri, data)) is not None:
            problems.append((uri, problem))
        else:
            found.append((uri, manifest))
    return Listing(found, problems)


def vouched_records(storage: Storage, out: str, prefix_uri: str, wanted: Callable[[dict], bool] = lambda _: True) -> list[dict]:
    """The sealed records under a prefix (clip records, review decisions) that the ledger vouches
    for and ``wanted`` picks. A record the ledger entered that has been altered since is an error
    naming it (the investigator's record is there, and not as written); any other file is left
    out and logged (run ``vigil verify``), so a file dropped there can neither add nor block."""
    vouching = Vouching(storage, out, deployment_keys())
    records = []
    for info in storage.list(prefix_uri):
        if not info.uri.endswith(".json"):
            continue
        data, record = b"", None
        try:
            data = storage.read_bytes(info.uri)
            problem = vouching.problem(info.uri, data)
            record = load_sealed(data, info.uri) if problem is None else None
        except (VigilError, ValueError, RecursionError) as exc:
            problem = f"{info.uri}: not a readable record ({exc})"
        if problem is None:
            if wanted(record):
                records.append(record)
        elif vouching.entered(info.uri):
            raise IntegrityError(f"{problem}; nothing was read from it (run vigil verify)")
        elif _picked(data, wanted):  # not the files beside the records (attachments)
            log.warning("left out: %s (run vigil verify)", problem)
    return records


def _picked(data: bytes, wanted: Callable[[dict], bool]) -> bool:
    """Whether a file left out is one the caller would have taken (worth a warning)."""
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        return True
    return not isinstance(record, dict) or wanted(record)


def _read_entry(storage: Storage, info) -> tuple[ledger.Entry | None, str]:
    """(entry, SHA-256 of its bytes), or (None, what is wrong with it)."""
    if info.size is not None and info.size > MAX_ENTRY_BYTES:
        return None, f"{info.size} bytes: not a ledger entry"
    try:
        data = storage.read_bytes(info.uri)
        entry = ledger.parse(data, info.uri)
    except (VigilError, ValueError, TypeError, RecursionError) as exc:
        return None, f"not a ledger entry ({exc})"
    fields = (entry.prev, entry.manifest, entry.manifest_sha256)
    if not isinstance(entry.seq, int) or not all(isinstance(f, str) for f in fields):
        return None, "not a ledger entry (fields of the wrong type)"
    if not all(f is None or isinstance(f, str) for f in (entry.entry_signature, entry.key_fingerprint)):
        return None, "not a ledger entry (fields of the wrong type)"
    return entry, hashlib.sha256(data).hexdigest()


def _link_problem(uri: str, index: int, entry: ledger.Entry, prev: str, keys: dict | None) -> str | None:
    if entry.seq != index or not uri.endswith(f"/{index:010d}.json"):
        return f"entry {entry.seq} where entry {index} belongs"
    if entry.prev != prev:
        return "does not follow the entry before it"
    if keys is not None:
        try:
            problems = ledger.entry_signature_problems(uri, entry, keys)
        except (ValueError, TypeError):  # a signature that is not base64
            problems = ["its signature is unreadable"]
        if problems:
            return "its signature is not from a trusted key"
    return None


def declares_ledger(data: bytes) -> bool:
    """Whether a record says it was entered in the ledger (every record sealed since there is one)."""
    try:
        return json.loads(data).get("ledger") == LEDGER
    except (ValueError, AttributeError, RecursionError):
        return False
