"""Ed25519 signatures over manifests: who wrote this output, checkable with ``openssl`` alone.

The signing key belongs to the operator, never to a run: ``VIGIL_SIGNING_KEY`` names a PEM file
(PKCS#8, e.g. made by ``openssl genpkey -algorithm ed25519 -out vigil.key``), or
``VIGIL_SIGNING_KEY_CONN`` names an Airflow connection (or secrets-backend entry) whose password,
or ``extra.private_key``, holds that PEM. Trigger parameters can never carry it: anyone who can
trigger a run could then sign anything.

A signature is stored beside what it signs, as ``<name>.sig``: the raw 64-byte Ed25519 signature,
so ``openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in <name> -sigfile <name>.sig`` checks
it as is. Beside it, ``<name>.sig.key`` names the key by its fingerprint (the SHA-256 of the raw
32-byte public key), so a verifier can say *which* key signed even when it does not trust it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vigil.errors import ParameterError

KEY_ENV = "VIGIL_SIGNING_KEY"
KEY_CONN_ENV = "VIGIL_SIGNING_KEY_CONN"
SIG_SUFFIX = ".sig"
KEY_NAME_SUFFIX = ".sig.key"
ALGORITHM = "ed25519"


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key (the same for the PEM and its private half)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Signer:
    """An operator's signing key, loaded once per process."""

    key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.key.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"{where}: not an unencrypted PEM private key ({exc}); make one with "
                             "`openssl genpkey -algorithm ed25519 -out vigil.key`") from exc  # fmt: skip
    if not isinstance(key, Ed25519PrivateKey):
        raise ParameterError(f"{where}: the signing key must be Ed25519, got {type(key).__name__}")
    return key


def configured_signer(environ: dict | None = None) -> Signer | None:
    """The operator's signer, or None when no key is configured (outputs are then unsigned)."""
    env = os.environ if environ is None else environ
    if path := env.get(KEY_ENV):
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise ParameterError(f"{KEY_ENV}={path}: cannot read the signing key ({exc.strerror})") from exc
        return Signer(load_private_key(pem, f"{KEY_ENV}={path}"))
    if conn_id := env.get(KEY_CONN_ENV):
        return Signer(load_private_key(_pem_from_connection(conn_id), f"Airflow connection {conn_id!r}"))
    return None


def _pem_from_connection(conn_id: str) -> bytes:
    try:
        from airflow.sdk import Connection

        conn = Connection.get(conn_id)
    except Exception as exc:  # the SDK raises several kinds; say what to do
        raise ParameterError(f"{KEY_CONN_ENV}={conn_id}: cannot read the connection ({type(exc).__name__}); define "
                             f"it in Airflow or as AIRFLOW_CONN_{conn_id.upper()}") from exc  # fmt: skip
    extra = conn.extra_dejson if conn.extra else {}
    pem = extra.get("private_key") or conn.password
    if not pem:
        raise ParameterError(f"connection {conn_id!r} holds no PEM key in its password or extra.private_key")
    return pem.encode()


def load_public_key(pem: bytes, where: str) -> Ed25519PublicKey:
    """A trusted public key; a private key PEM is accepted too (its public half is used)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        key = load_private_key(pem, where).public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ParameterError(f"{where}: not an Ed25519 public key")
    return key


def load_keyring(paths: list[str] | tuple[str, ...]) -> dict[str, Ed25519PublicKey]:
    """Trusted keys by fingerprint, from PEM files; a file may hold several PEM public keys."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise ParameterError(f"{path}: cannot read the trusted key ({exc.strerror})") from exc
        marker = b"-----BEGIN "
        blocks = [marker + b for b in text.split(marker)[1:]] or [text]
        for block in blocks:
            key = load_public_key(block, path)
            keys[fingerprint(key)] = key
    return keys


def key_name_bytes(fp: str) -> bytes:
    return f"{ALGORITHM} {fp}\n".encode()


def parse_key_name(data: bytes) -> str | None:
    parts = data.decode("ascii", "replace").split()
    return parts[1] if len(parts) == 2 and parts[0] == ALGORITHM else None


def check(data: bytes, signature: bytes, keys: dict[str, Ed25519PublicKey], named: str | None) -> str | None:
    """The fingerprint of the trusted key that made ``signature`` over ``data``, or None.

    Every trusted key is tried, not only the one the ``.sig.key`` file names: that file is a hint
    anyone could edit, the signature is what proves.
    """
    order = sorted(keys, key=lambda fp: fp != named)
    for fp in order:
        try:
            keys[fp].verify(signature, data)
            return fp
        except InvalidSignature:
            continue
    return None
