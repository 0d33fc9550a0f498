"""RFC 3161 timestamps against a real TSA on 127.0.0.1 (openssl ts -reply), never a public one."""

from __future__ import annotations

import subprocess

import pytest

from local_tsa import start_tsa
from vigil.errors import IntegrityError
from vigil.store import custody, timestamps
from vigil.store.file_backend import FileStorage
from vigil.uri import file_uri

MANIFEST = b'{"recording_id": "corridor", "manifest_sha256": "0"}\n'


@pytest.fixture(scope="module")
def tsa(tmp_path_factory):
    server = start_tsa(tmp_path_factory.mktemp("tsa"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    from local_tsa import make_tsa_pki

    return make_tsa_pki(tmp_path_factory.mktemp("other"), name="someone else") / "ca.crt"


def test_token_from_the_local_tsa_verifies_and_says_when(tsa):
    token = timestamps.request_token(tsa.url, MANIFEST)
    attested = timestamps.verify_token(token, MANIFEST, timestamps.load_roots([str(tsa.root)]), "token")
    assert "vigil test TSA" in attested.tsa
    assert attested.time.tzinfo is not None


def test_token_over_other_bytes_fails(tsa):
    token = timestamps.request_token(tsa.url, MANIFEST)
    with pytest.raises(IntegrityError, match="Mismatch between messages"):
        timestamps.verify_token(token, MANIFEST.replace(b"corridor", b"corrid0r"), timestamps.load_roots([str(tsa.root)]), "t")


def test_token_from_a_tsa_outside_the_configured_roots_fails(tsa, other_ca):
    token = timestamps.request_token(tsa.url, MANIFEST)
    with pytest.raises(IntegrityError, match="unable to get local issuer certificate"):
        timestamps.verify_token(token, MANIFEST, timestamps.load_roots([str(other_ca)]), "t")


def test_openssl_ts_verify_agrees(tsa, tmp_path):
    (tmp_path / "m.json").write_bytes(MANIFEST)
    (tmp_path / "m.tsr").write_bytes(timestamps.request_token(tsa.url, MANIFEST))

    def openssl_verify(data: bytes) -> int:
        (tmp_path / "m.json").write_bytes(data)
        return subprocess.run(["openssl", "ts", "-verify", "-data", "m.json", "-in", "m.tsr", "-CAfile", str(tsa.root)],
                              cwd=tmp_path, capture_output=True).returncode  # fmt: skip

    assert openssl_verify(MANIFEST) == 0
    assert openssl_verify(MANIFEST + b" ") != 0


def _dead_url() -> str:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/tsa"


def test_seal_completes_without_a_reachable_tsa_and_stamp_fills_in_later(tsa, tmp_path, monkeypatch):
    out, storage = file_uri(tmp_path / "out"), FileStorage()
    uri = f"{out}/manifests/corridor.json"
    storage.write_bytes(uri, MANIFEST)
    dead = _dead_url()
    monkeypatch.delenv("VIGIL_SIGNING_KEY", raising=False)
    monkeypatch.setenv(timestamps.URLS_ENV, dead)
    sealed = custody.seal(storage, out, uri, MANIFEST, run="run-1")
    assert sealed.timestamped is False and sealed.ledger_head.startswith("1:")
    report = custody.check(storage, out, None, timestamps.load_roots([str(tsa.root)]))
    assert any("not yet timestamped" in n for n in report.notes)
    assert custody.stamp_all(storage, out, retries=1, backoff_s=0.01) == {uri: [dead]}  # still down: said, not hidden

    monkeypatch.setenv(timestamps.URLS_ENV, f"{dead},{tsa.url}")  # one of two TSAs back
    assert custody.stamp_all(storage, out, retries=0) == {uri: [dead]}
    monkeypatch.setenv(timestamps.URLS_ENV, tsa.url)
    assert custody.stamp_all(storage, out, retries=0) == {}
    report = custody.check(storage, out, None, timestamps.load_roots([str(tsa.root)]))
    assert report.problems == []
    assert [c for c in report.checked if "timestamp attests" in c and "vigil test TSA" in c]


def test_verify_fails_when_a_token_is_swapped_for_another_manifests(tsa, tmp_path, monkeypatch):
    out, storage = file_uri(tmp_path / "out"), FileStorage()
    monkeypatch.setenv(timestamps.URLS_ENV, tsa.url)
    monkeypatch.delenv("VIGIL_SIGNING_KEY", raising=False)
    for name in ("a", "b"):
        data = MANIFEST.replace(b"corridor", name.encode())
        storage.write_bytes(f"{out}/manifests/{name}.json", data)
        assert custody.seal(storage, out, f"{out}/manifests/{name}.json", data).timestamped
    token_a = timestamps.token_uri(f"{out}/manifests/a.json", tsa.url)
    storage.write_bytes(token_a, storage.read_bytes(timestamps.token_uri(f"{out}/manifests/b.json", tsa.url)))
    report = custody.check(storage, out, None, timestamps.load_roots([str(tsa.root)]))
    assert len(report.problems) == 1 and "a.json.tsa-" in report.problems[0]


def test_stamp_fills_in_clip_records_and_review_decisions_too(tsa, tmp_path, monkeypatch):
    """Every sealed record goes through the one ``seal``: a record sealed while the TSA was down is
    stamped later by ``vigil stamp``, whatever kind it is; a CVAT attachment (vouched for by its
    decision's hash) is no record of its own."""
    out, storage = file_uri(tmp_path / "out"), FileStorage()
    monkeypatch.delenv("VIGIL_SIGNING_KEY", raising=False)
    monkeypatch.setenv(timestamps.URLS_ENV, _dead_url())
    records = {f"{out}/clips/recording_id=cam/cam_000010-000014_ab.mp4.json": {"clip_sha256": "ab"},
               f"{out}/reviews/recording_id=cam/20240301T000000Z-1.json": {"decision": "confirmed"}}  # fmt: skip
    for uri, record in records.items():
        assert custody.publish_sealed(storage, out, uri, record).timestamped is False
    storage.write_bytes(f"{out}/reviews/recording_id=cam/cvat/ab.json", MANIFEST)  # an attachment
    monkeypatch.setenv(timestamps.URLS_ENV, tsa.url)
    assert custody.stamp_all(storage, out, retries=0) == {}
    assert all(storage.list(timestamps.token_uri(uri, tsa.url)) for uri in records)
    assert not storage.list(timestamps.token_uri(f"{out}/reviews/recording_id=cam/cvat/ab.json", tsa.url))
    report = custody.check(storage, out, None, timestamps.load_roots([str(tsa.root)]))
    assert report.problems == [] and len([c for c in report.checked if "timestamp attests" in c]) == 2
    assert "2 entries, chain whole" in " ".join(report.notes)
