"""Signing keys from the operator (openssl-made keys, files, Airflow connections) and the case
ledger (hash chain, signed entries, racing writers, file:// and S3)."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from vigil.errors import ParameterError
from vigil.store import ledger, signing
from vigil.store.file_backend import FileStorage
from vigil.uri import file_uri


@pytest.fixture(scope="module")
def openssl_key(tmp_path_factory) -> Path:
    """An Ed25519 key made the way an operator would: `openssl genpkey -algorithm ed25519`."""
    path = tmp_path_factory.mktemp("key") / "vigil.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(path)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout", "-out", str(path.with_suffix(".pub.pem"))], check=True)
    return path


def test_signer_from_an_openssl_key_signs_what_openssl_verifies(openssl_key, tmp_path):
    signer = signing.configured_signer({signing.KEY_ENV: str(openssl_key)})
    data = tmp_path / "manifest.json"
    data.write_bytes(b'{"recording_id": "x"}\n')
    (tmp_path / "manifest.json.sig").write_bytes(signer.sign(data.read_bytes()))
    pub = openssl_key.with_suffix(".pub.pem")
    ok = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin", "-in", str(data),
                         "-sigfile", str(tmp_path / "manifest.json.sig")], capture_output=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    data.write_bytes(b'{"recording_id": "y"}\n')
    bad = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin", "-in", str(data),
                          "-sigfile", str(tmp_path / "manifest.json.sig")], capture_output=True)  # fmt: skip
    assert bad.returncode != 0


def test_fingerprint_is_the_sha256_of_the_raw_public_key_as_openssl_computes_it(openssl_key):
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(openssl_key.with_suffix(".pub.pem")), "-outform", "DER"],
                         check=True, capture_output=True).stdout  # fmt: skip
    import hashlib

    signer = signing.configured_signer({signing.KEY_ENV: str(openssl_key)})
    assert signer.fingerprint == "sha256:" + hashlib.sha256(der[-32:]).hexdigest()
    keyring = signing.load_keyring([str(openssl_key.with_suffix(".pub.pem"))])
    assert list(keyring) == [signer.fingerprint]


def test_signer_comes_from_an_airflow_connection(openssl_key, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_VIGIL_TEST_SIGNING", json.dumps({"conn_type": "generic", "password": openssl_key.read_text()}))
    signer = signing.configured_signer({signing.KEY_CONN_ENV: "vigil_test_signing"})
    assert signer.fingerprint == signing.configured_signer({signing.KEY_ENV: str(openssl_key)}).fingerprint


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, None),
        ({signing.KEY_ENV: "/nonexistent/vigil.key"}, "cannot read the signing key"),
        ({signing.KEY_ENV: "RSA"}, "must be Ed25519"),
        ({signing.KEY_ENV: "GARBAGE"}, "not an unencrypted PEM private key"),
    ],
)
def test_configured_signer_without_or_with_a_bad_key(environ, expected, tmp_path):
    if environ.get(signing.KEY_ENV) == "RSA":
        path = tmp_path / "rsa.key"
        subprocess.run(["openssl", "genpkey", "-algorithm", "rsa", "-out", str(path)], check=True, capture_output=True)
        environ = {signing.KEY_ENV: str(path)}
    if environ.get(signing.KEY_ENV) == "GARBAGE":
        (tmp_path / "garbage.key").write_text("not a key")
        environ = {signing.KEY_ENV: str(tmp_path / "garbage.key")}
    if expected is None:
        assert signing.configured_signer(environ) is None
    else:
        with pytest.raises(ParameterError, match=expected):
            signing.configured_signer(environ)


def _ledger(storage, out: str, signer, count: int) -> None:
    for i in range(count):
        ledger.append(storage, out, f"manifests/r{i}.json", f"{i:064x}", signer.sign(b"m") if signer else None, signer, "run-1")


@pytest.fixture
def signer(openssl_key):
    return signing.configured_signer({signing.KEY_ENV: str(openssl_key)})


def test_ledger_chain_verifies_and_names_the_head(tmp_path, signer):
    out, storage = file_uri(tmp_path / "out"), FileStorage()
    _ledger(storage, out, signer, 3)
    keys = {signer.fingerprint: signer.public_key}
    chain = ledger.check_chain(storage, out, keys, ledger.head(storage, out))
    assert chain.problems == []
    assert chain.head.seq == 3 and set(chain.latest) == {f"manifests/r{i}.json" for i in range(3)}


def test_ledger_with_an_entry_removed_and_the_chain_recomputed_fails(tmp_path, signer):
    """What someone with write access but without the key can do: drop entry 2, renumber, relink."""
    import hashlib

    out, storage = file_uri(tmp_path / "out"), FileStorage()
    _ledger(storage, out, signer, 3)
    folder = tmp_path / "out" / "ledger"
    first = folder / "0000000001.json"
    third = json.loads((folder / "0000000003.json").read_bytes())
    (folder / "0000000003.json").unlink()
    third.update(seq=2, prev=hashlib.sha256(first.read_bytes()).hexdigest())
    (folder / "0000000002.json").write_bytes(ledger.Entry(**third).to_bytes())
    keys = {signer.fingerprint: signer.public_key}
    problems = ledger.check_chain(storage, out, keys).problems
    assert problems == [f"{file_uri(folder / '0000000002.json')}: ledger entry's signature is not from a trusted key "
                        "(or the entry was altered)"]  # fmt: skip


def test_ledger_with_an_entry_deleted_fails(tmp_path, signer):
    out, storage = file_uri(tmp_path / "out"), FileStorage()
    _ledger(storage, out, signer, 3)
    (tmp_path / "out" / "ledger" / "0000000002.json").unlink()
    problems = ledger.check_chain(storage, out, {signer.fingerprint: signer.public_key}).problems
    assert any("entry 3 where entry 2 belongs" in p for p in problems)
    assert any("does not follow the entry before it" in p for p in problems)


def test_ledger_cut_short_is_caught_by_the_head_recorded_elsewhere(tmp_path, signer):
    out, storage = file_uri(tmp_path / "out"), FileStorage()
    _ledger(storage, out, signer, 3)
    recorded = ledger.head(storage, out)
    (tmp_path / "out" / "ledger" / "0000000003.json").unlink()
    keys = {signer.fingerprint: signer.public_key}
    assert ledger.check_chain(storage, out, keys).problems == []  # the chain alone cannot tell
    problems = ledger.check_chain(storage, out, keys, recorded).problems
    assert len(problems) == 1 and "is missing (the ledger was truncated)" in problems[0]


def test_ledger_appends_from_racing_writers_all_land_once_in_one_chain(tmp_path, signer):
    out, storage = file_uri(tmp_path / "out"), FileStorage()
    writers = [threading.Thread(target=_ledger, args=(storage, out, signer, 5)) for _ in range(6)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    chain = ledger.check_chain(storage, out, {signer.fingerprint: signer.public_key})
    assert chain.problems == [] and chain.head.seq == 30


def test_ledger_on_s3_uses_conditional_creates(s3_storage, signer):
    out = f"s3://{s3_storage.buckets['out']}/case"
    writers = [threading.Thread(target=_ledger, args=(s3_storage, out, signer, 3)) for _ in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    chain = ledger.check_chain(s3_storage, out, {signer.fingerprint: signer.public_key})
    assert chain.problems == [] and chain.head.seq == 9
    assert not s3_storage.write_bytes(ledger.entry_uri(out, 4), b"{}", if_absent=True)  # entries cannot be replaced so


def test_unsigned_ledger_entries_fail_when_keys_are_required(tmp_path):
    out, storage = file_uri(tmp_path / "out"), FileStorage()
    _ledger(storage, out, None, 2)
    assert ledger.check_chain(storage, out, None).problems == []
    assert len(ledger.check_chain(storage, out, {}).problems) == 2


def test_a_record_written_unsigned_into_a_signed_output_is_warned_about(openssl_key, tmp_path, monkeypatch, caplog):
    """An analyst without the operator's key records a decision: it is kept (ledgered, unsigned),
    and the analyst is told that `verify --trust` will fail on it, not left to find out later."""
    from vigil.store import custody

    out, storage = file_uri(tmp_path / "out"), FileStorage()
    monkeypatch.setenv(signing.KEY_ENV, str(openssl_key))
    custody.publish_sealed(storage, out, f"{out}/manifests/cam.json", {"recording_id": "cam"})
    monkeypatch.delenv(signing.KEY_ENV)
    decision = f"{out}/reviews/recording_id=cam/1.json"
    with caplog.at_level("WARNING"):
        sealed = custody.publish_sealed(storage, out, decision, {"decision": "confirmed"})
    assert sealed.signed_by is None and sealed.ledger_head.startswith("2:")
    assert any(decision in r.message and "UNSIGNED" in r.message for r in caplog.records)
    keys = signing.load_keyring([str(openssl_key.with_suffix(".pub.pem"))])
    problems = custody.check(storage, out, keys, []).problems
    assert any(f"{decision}: unsigned" in p for p in problems) and any("ledger entry is not signed" in p for p in problems)
