"""Chain of custody: seal each record as it is written, and check an output's seals.

A *record* is a sealed JSON file that vouches for others: a manifest (the files of one run), a
clip record (one clip and the source range it copies) or a review decision (an investigator's
verdict, with the hash of the rows it is about); ``layout.sealed_record_uris`` lists them.
``seal`` is the one call made after writing any of them (finalize, ``vigil clip``, ``vigil
review``, the plugin's form, a CVAT import): sign it (when the operator configured a key), record
it in the ledger, ask the configured TSAs for timestamps. ``check`` is what ``vigil verify
--trust`` adds to the file-by-file checks of ``store.integrity.verify``, ``verify_clips`` and
``verify_decisions``:

- every record is signed by a trusted key (a forged file with a resealed record fails here);
- the ledger's chain is whole and its entries are signed by a trusted key (a rewritten ledger);
- every record is the one the ledger recorded last for its path (a replaced record);
- every record the ledger recorded is still there (a recording, clip or decision deleted);
- with ``--head``, the ledger still reaches the head an Airflow run recorded (a truncated ledger);
- each timestamp token is over its record's bytes and chains to a configured root.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

from vigil.errors import IntegrityError, ObjectNotFound
from vigil.store import ledger, signing, timestamps
from vigil.store.layout import CLIPS, KEYS, LEDGER, REVIEWS, relative_path, sealed_record_uris
from vigil.store.manifest import manifest_bytes
from vigil.store.schema import MANIFESTS
from vigil.store.storage import Storage
from vigil.store.vouched import declares_ledger
from vigil.uri import join_uri

log = logging.getLogger(__name__)
SELECTION = "export.json"  # in an evidence package: which recordings it holds (see store.export)


@dataclass(frozen=True)
class Sealed:
    """What ``seal`` did for one record."""

    signed_by: str | None  # key fingerprint, None when no key is configured
    ledger_head: str  # "SEQ:SHA256" after this record's entry
    timestamped: bool  # a token from every configured TSA (False when none is configured)


def seal(storage: Storage, out: str, record_uri: str, data: bytes, run: str | None = None) -> Sealed:
    """Sign, record in the ledger and timestamp a record (manifest, clip record, review decision)
    just written at ``record_uri`` with these bytes."""
    signer = signing.configured_signer()
    if signer is None and (last := ledger.last_entry(storage, out)) is not None and last.entry_signature:
        log.warning("%s: written UNSIGNED into an output whose ledger is signed, so `vigil verify --trust` will "
                    "fail on it; configure %s (or %s) wherever records are written", record_uri,
                    signing.KEY_ENV, signing.KEY_CONN_ENV)  # fmt: skip
    signature = None
    if signer is not None:
        signature = signer.sign(data)
        # The public half travels with the output (for export); trust still comes from --trust.
        storage.write_bytes(key_uri(out, signer.fingerprint), signer.public_pem(), if_absent=True)
        storage.write_bytes(record_uri + signing.KEY_NAME_SUFFIX, signing.key_name_bytes(signer.fingerprint))
        storage.write_bytes(record_uri + signing.SIG_SUFFIX, signature)
    path = relative_path(record_uri, out)
    head = ledger.append(storage, out, path, hashlib.sha256(data).hexdigest(), signature, signer, run or ledger.run_id())
    urls = timestamps.configured_urls()
    missing = timestamps.stamp(storage, record_uri, data, urls) if urls else []
    return Sealed(signer.fingerprint if signer else None, str(head), bool(urls) and not missing)


def publish_sealed(storage: Storage, out: str, record_uri: str, record: dict, if_absent: bool = False) -> Sealed | None:
    """Write a record in its sealed (self-hashed) form, saying it is in the ledger, then ``seal`` it.
    With ``if_absent``, a record already at ``record_uri`` is left as it is: returns None."""
    data = manifest_bytes({**record, "ledger": LEDGER})
    if not storage.write_bytes(record_uri, data, if_absent=if_absent):
        return None
    return seal(storage, out, record_uri, data)


def key_uri(out: str, fingerprint: str) -> str:
    """Where an output keeps the public key of a fingerprint: ``keys/<hex>.pem``."""
    return join_uri(out, KEYS, fingerprint.removeprefix("sha256:") + ".pem")


def stamp_all(storage: Storage, out: str, retries: int = 3, backoff_s: float = 2.0) -> dict[str, list[str]]:
    """``vigil stamp``: ask again for every token still missing (manifests, clip records, review
    decisions); returns record -> TSAs still missing."""
    urls = timestamps.configured_urls()
    if not urls:
        from vigil.errors import ParameterError

        raise ParameterError(f"no TSA configured: set {timestamps.URLS_ENV} to one or more RFC 3161 URLs")
    still = {}
    for uri in sealed_record_uris(storage, out):
        missing = timestamps.stamp(storage, uri, storage.read_bytes(uri), urls, retries, backoff_s)
        if missing:
            still[uri] = missing
    return still


@dataclass
class CustodyReport:
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check(storage: Storage, out: str, keys: dict | None, roots: list, expected_head: ledger.Head | None = None) -> CustodyReport:
    """Signatures (with ``keys``), ledger and timestamps of an output's records.

    Without keys the ledger is still checked where there is one (chain, replaced or deleted
    records), but nothing is authenticated: anyone could have rewritten it consistently.
    """
    report = CustodyReport()
    present: dict[str, bytes] = {}
    tokens = _token_index(storage, out)
    for uri in sealed_record_uris(storage, out):
        path = relative_path(uri, out)
        data = present[path] = storage.read_bytes(uri)
        if keys is not None:
            _check_signature(storage, uri, data, keys, _kind(path), report)
        _check_tokens(storage, uri, data, tokens.get(uri, []), roots, report)
    chain = ledger.check_chain(storage, out, keys, expected_head)
    report.problems += chain.problems
    ledger_uri = join_uri(out, ledger.LEDGER)
    if chain.head is None:
        if keys is not None:
            report.problems.append(f"{ledger_uri}: no ledger; this output cannot be authenticated")
        for path, data in present.items():
            if keys is not None or declares_ledger(data):
                report.problems.append(f"{join_uri(out, path)}: not recorded in the ledger: {ledger_uri} is missing or emptied")
    else:
        _check_against_ledger(out, present, chain, _selection(storage, out), keys is not None, report)
        if not chain.problems:
            whole = f"{ledger_uri}: {chain.head.seq} entries, chain whole, head {chain.head}"
            (report.checked if keys is not None else report.notes).append(whole)
    if keys is None:
        report.notes.append(f"{out}: UNAUTHENTICATED: files match their manifests, but nothing shows the manifests are "
                            "what vigil wrote; pass --trust PUBKEY.pem to check signatures and the ledger")  # fmt: skip
    return report


def _check_against_ledger(out: str, present: dict[str, bytes], chain: ledger.LedgerCheck, selected: set[str] | None,
                          strict: bool, report: CustodyReport) -> None:  # fmt: skip
    for path, data in present.items():
        entry = chain.latest.get(path)
        if entry is None:
            if strict or declares_ledger(data):
                report.problems.append(f"{join_uri(out, path)}: not recorded in the ledger")
            else:
                report.notes.append(f"{join_uri(out, path)}: written before this output had a ledger")
        elif entry.manifest_sha256 != hashlib.sha256(data).hexdigest():
            report.problems.append(f"{join_uri(out, path)}: not the {_kind(path)} the ledger recorded in "
                                   f"{ledger.entry_uri(out, entry.seq)}: replaced")  # fmt: skip
    for path, entry in chain.latest.items():
        if path not in present and (selected is None or path in selected):
            report.problems.append(f"{join_uri(out, path)}: recorded in ledger entry {entry.seq} but missing: "
                                   f"{_DELETED[_kind(path)]} was deleted")  # fmt: skip


_KINDS = {CLIPS: "clip record", REVIEWS: "review decision"}
_DELETED = {"manifest": "the recording's output", "clip record": "the clip record", "review decision": "the review decision"}


def _kind(path: str) -> str:
    """Which kind of sealed record a path (relative to the output) is."""
    return _KINDS.get(path.split("/", 1)[0], "manifest")


def check_args(storage: Storage, out: str, key_files: list[str], root_files: list[str], head: str | None) -> CustodyReport:
    """``check`` from command-line values: key files (none: unauthenticated), root files, a head."""
    from vigil.errors import ParameterError

    keys = signing.load_keyring(key_files) if key_files else None
    roots = timestamps.load_roots(root_files or timestamps.configured_root_paths())
    try:
        expected = ledger.Head.parse(head) if head else None
    except ValueError as exc:
        raise ParameterError(str(exc)) from exc
    return check(storage, out, keys, roots, expected)


def _check_signature(storage: Storage, uri: str, data: bytes, keys: dict, kind: str, report: CustodyReport) -> None:
    try:
        signature = storage.read_bytes(uri + signing.SIG_SUFFIX)
    except ObjectNotFound:
        report.problems.append(f"{uri}: unsigned (no {uri.rsplit('/', 1)[-1]}{signing.SIG_SUFFIX})")
        return
    try:
        named = signing.parse_key_name(storage.read_bytes(uri + signing.KEY_NAME_SUFFIX))
    except ObjectNotFound:
        named = None
    fp = signing.check(data, signature, keys, named)
    if fp is None:
        report.problems.append(f"{uri}: signature is not from a trusted key (it names {named or 'no key'}) "
                               f"or the {kind} was altered")  # fmt: skip
    else:
        report.checked.append(f"{uri}: signed by trusted key {fp}")


def _token_index(storage: Storage, out: str) -> dict[str, list[str]]:
    """Record URI -> its timestamp tokens, from one listing per folder of records (a listing per
    record would cost a folder's listing per decision: minutes at a thousand decisions)."""
    index: dict[str, list[str]] = {}
    for folder in (MANIFESTS, CLIPS, REVIEWS):
        for info in storage.list(join_uri(out, folder)):
            record, marker, _ = info.uri.rpartition(".tsa-")
            if marker and info.uri.endswith(timestamps.TOKEN_SUFFIX):
                index.setdefault(record, []).append(info.uri)
    return index


def _check_tokens(storage: Storage, uri: str, data: bytes, tokens: list[str], roots: list, report: CustodyReport) -> None:
    if not tokens:
        report.notes.append(f"{uri}: not yet timestamped (run `vigil stamp OUT` once a TSA is reachable)")
        return
    if not roots:
        report.notes.append(f"{uri}: {len(tokens)} timestamp token(s) not checked: pass --tsa-roots or set {timestamps.ROOTS_ENV}")
        return
    for token in tokens:
        try:
            attested = timestamps.verify_token(storage.read_bytes(token), data, roots, token)
        except IntegrityError as exc:
            report.problems.append(str(exc))
            continue
        report.checked.append(f"{token}: timestamp attests {attested.time.isoformat()} ({attested.tsa})")


def _selection(storage: Storage, out: str) -> set[str] | None:
    """In an evidence package, the records it was made to hold; None for a whole output."""
    try:
        selection = json.loads(storage.read_bytes(join_uri(out, SELECTION)))
    except ObjectNotFound:
        return None
    return {*selection["manifests"], *selection.get("records", [])}
