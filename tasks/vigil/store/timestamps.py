"""RFC 3161 trusted timestamps over manifests: proof from a third party that these exact bytes
existed at a given time.

The operator configures the authorities, never a run: ``VIGIL_TSA_URLS`` (one or more URLs,
comma-separated; several independent TSAs make the proof survive one of them being distrusted)
and ``VIGIL_TSA_ROOTS`` (PEM files of the CA certificates a token's chain must end in, separated
by commas). Each token is stored beside its manifest as ``<name>.tsa-<8 hex of the URL>.tsr``: the
DER TimeStampResp as the TSA sent it, so ``openssl ts -verify -data <name> -in <token>
-CAfile roots.pem`` checks it without vigil.

No TSA reachable is not a failed run: the manifest stays "not yet timestamped" (no token beside
it), ``vigil verify`` says so, and ``vigil stamp OUT`` asks again later, with retries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder, VerifierBuilder, decode_timestamp_response
from rfc3161_client.errors import VerificationError

from vigil.errors import IntegrityError, ParameterError, TransientError
from vigil.store.storage import Storage

log = logging.getLogger(__name__)

URLS_ENV = "VIGIL_TSA_URLS"
ROOTS_ENV = "VIGIL_TSA_ROOTS"
TOKEN_SUFFIX = ".tsr"


class TimestampUnavailable(TransientError):
    """No configured TSA answered with a valid token; stamp later with ``vigil stamp OUT``."""


def configured_urls(environ: dict | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return [u.strip() for u in env.get(URLS_ENV, "").replace(" ", ",").split(",") if u.strip()]


def load_roots(paths: list[str] | tuple[str, ...]) -> list[x509.Certificate]:
    roots = []
    for path in paths:
        try:
            roots += x509.load_pem_x509_certificates(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise ParameterError(f"{path}: cannot read TSA root certificates ({exc})") from exc
    return roots


def configured_root_paths(environ: dict | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return [p.strip() for p in env.get(ROOTS_ENV, "").split(",") if p.strip()]


def token_uri(signed_uri: str, tsa_url: str) -> str:
    return f"{signed_uri}.tsa-{hashlib.sha256(tsa_url.encode()).hexdigest()[:8]}{TOKEN_SUFFIX}"


def request_token(tsa_url: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Ask one TSA for a token over ``data``; check that what came back is over these bytes."""
    request = TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256).nonce(nonce=True).build()
    http = urllib.request.Request(tsa_url, data=request.as_bytes(), method="POST",
                                  headers={"Content-Type": "application/timestamp-query"})  # fmt: skip
    try:
        with urllib.request.urlopen(http, timeout=timeout) as answer:
            body = answer.read()
    except (urllib.error.URLError, OSError) as exc:
        raise TimestampUnavailable(f"{tsa_url}: no answer ({exc})") from exc
    try:
        response = decode_timestamp_response(body)
    except ValueError as exc:
        raise TimestampUnavailable(f"{tsa_url}: not a timestamp response ({exc})") from exc
    if response.status not in (0, 1):  # granted, granted with modifications
        raise TimestampUnavailable(f"{tsa_url}: refused ({response.status_string})")
    info = response.tst_info
    if info.message_imprint.message != hashlib.sha256(data).digest() or info.nonce != request.nonce:
        raise IntegrityError(f"{tsa_url}: the token is not over the bytes sent (imprint or nonce differ)")
    return body


def stamp(storage: Storage, signed_uri: str, data: bytes, urls: list[str], retries: int = 0, backoff_s: float = 2.0) -> list[str]:
    """Get a token from every TSA that lacks one for ``signed_uri``; return what is still missing."""
    missing = []
    for url in urls:
        target = token_uri(signed_uri, url)
        if _exists(storage, target):
            continue
        for attempt in range(retries + 1):
            try:
                storage.write_bytes(target, request_token(url, data))
                break
            except (TimestampUnavailable, IntegrityError) as exc:  # a bad answer is no answer
                if attempt == retries:
                    log.warning("%s: not yet timestamped by %s: %s", signed_uri, url, exc)
                    missing.append(url)
                else:
                    time.sleep(backoff_s * 2**attempt)
    return missing


def _exists(storage: Storage, uri: str) -> bool:
    from vigil.errors import ObjectNotFound

    try:
        storage.stat(uri)
        return True
    except ObjectNotFound:
        return False


@dataclass(frozen=True)
class Attested:
    """A token that checked out: when, and by whom."""

    token_uri: str
    time: datetime
    tsa: str


def verify_token(token: bytes, data: bytes, roots: list[x509.Certificate], where: str) -> Attested:
    """Check a token's imprint against ``data`` and its chain against ``roots``; return its time."""
    if not roots:
        raise ParameterError(f"{where}: no TSA root certificates to check against; set {ROOTS_ENV} or pass --tsa-roots")
    try:
        response = decode_timestamp_response(token)
        VerifierBuilder(roots=list(roots)).build().verify_message(response, data)
    except (ValueError, VerificationError) as exc:
        raise IntegrityError(f"{where}: timestamp token does not verify ({exc})") from exc
    name = getattr(response.tst_info.name, "value", None)
    return Attested(where, response.tst_info.gen_time, name.rfc4514_string() if isinstance(name, x509.Name) else str(name))
