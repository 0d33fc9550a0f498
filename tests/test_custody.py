"""Chain of custody end to end: a real signed and timestamped output (one CLI run of the sample
footage through the real model, a local TSA), then each kind of tampering `vigil verify --trust`
must catch, a query over an altered file, and an evidence package checked by openssl alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from local_tsa import start_tsa

pytestmark = pytest.mark.slow
FAST = ["--sample-fps", "0.5", "--shard-seconds", "60"]  # 70 frames, 3 shards: real model, seconds


def _vigil(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vigil.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})})  # fmt: skip


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory, footage):
    """One output written with an operator key (made by openssl) and a local TSA configured."""
    from vigil.uri import file_uri

    base = tmp_path_factory.mktemp("custody")
    tsa = start_tsa(base / "tsa")
    key = base / "vigil.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(base / "pub.pem")], check=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(base / "other.key")], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(base / "other.key"), "-pubout", "-out", str(base / "other.pem")], check=True)
    source = base / "source" / "corridor.mp4"
    source.parent.mkdir()
    shutil.copy(footage, source)
    env = {"VIGIL_SIGNING_KEY": str(key), "VIGIL_TSA_URLS": tsa.url}
    done = _vigil("process", file_uri(source), "--out", file_uri(base / "out"), *FAST, env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout[: done.stdout.rindex("]") + 1])[0]
    yield {"base": base, "out": base / "out", "pub": base / "pub.pem", "other": base / "other.pem", "tsa": tsa,
           "env": env, "summary": summary}  # fmt: skip
    tsa.stop()


@pytest.fixture
def copy(signed_run, tmp_path) -> Path:
    shutil.copytree(signed_run["out"], tmp_path / "out")
    return tmp_path / "out"


def _verify(out: Path, *args: str) -> subprocess.CompletedProcess:
    from vigil.uri import file_uri

    return _vigil("verify", "--quiet", file_uri(out), *args)


def test_run_summary_says_signed_ledgered_and_timestamped(signed_run):
    summary = signed_run["summary"]
    assert summary["signed_by"].startswith("sha256:") and summary["timestamped"] is True
    assert summary["ledger_head"].startswith("1:")


def test_clean_signed_output_verifies_with_trust_and_prints_the_attested_time(signed_run):
    done = _vigil("verify", f"file://{signed_run['out']}", "--trust", str(signed_run["pub"]),
                  "--tsa-roots", str(signed_run["tsa"].root), "--head", signed_run["summary"]["ledger_head"])  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "signed by trusted key sha256:" in done.stdout
    assert "timestamp attests 20" in done.stdout and "vigil test TSA" in done.stdout
    assert "UNAUTHENTICATED" not in done.stdout + done.stderr


def test_verify_without_trust_passes_and_says_unauthenticated(signed_run):
    done = _verify(signed_run["out"])
    assert done.returncode == 0
    assert "UNAUTHENTICATED" in done.stderr


def test_untrusted_key_fails(signed_run):
    done = _verify(signed_run["out"], "--trust", str(signed_run["other"]))
    assert done.returncode == 1
    assert ".json: signature is not from a trusted key (it names sha256:" in done.stdout  # the manifest's
    assert "ledger entry's signature is not from a trusted key" in done.stdout


def test_unsigned_manifest_fails_with_trust(signed_run, copy):
    next((copy / "manifests").glob("*.json.sig")).unlink()
    done = _verify(copy, "--trust", str(signed_run["pub"]))
    assert done.returncode == 1 and "unsigned" in done.stdout


def test_forged_parquet_with_a_resealed_manifest_fails_only_with_trust(signed_run, copy):
    """The attack of the issue: change a file, put its hash in the manifest, reseal the manifest."""
    import hashlib

    import pyarrow.parquet as pq

    from vigil.store.manifest import manifest_bytes

    manifest_path = next((copy / "manifests").glob("*.json"))
    manifest = json.loads(manifest_path.read_bytes())
    entry = manifest["derived"]["presence"]
    target = copy / entry["path"]
    table = pq.read_table(target)
    pq.write_table(table.slice(0, 1), target)  # 6 presence intervals become 1
    entry.update(sha256=hashlib.sha256(target.read_bytes()).hexdigest(), rows=1)
    manifest_path.write_bytes(manifest_bytes(manifest))

    assert "replaced" in _verify(copy).stdout  # even unauthenticated, the ledger remembers the old manifest
    # ...so the forger rewrites the ledger entry too: now everything is consistent, and plain verify passes
    entry_path = copy / "ledger" / "0000000001.json"
    entry = json.loads(entry_path.read_bytes())
    entry["manifest_sha256"] = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    entry_path.write_bytes(json.dumps(entry, sort_keys=True).encode() + b"\n")
    assert _verify(copy).returncode == 0
    done = _verify(copy, "--trust", str(signed_run["pub"]), "--tsa-roots", str(signed_run["tsa"].root))
    assert done.returncode == 1
    assert "signature is not from a trusted key" in done.stdout
    assert "ledger entry's signature is not from a trusted key" in done.stdout
    assert "timestamp token does not verify" in done.stdout


def test_recording_deleted_whole_fails(signed_run, copy):
    for path in list(copy.rglob("*")):
        if path.is_file() and ("recording_id=" in str(path) or path.parent.name == "manifests"):
            path.unlink()
    done = _verify(copy, "--trust", str(signed_run["pub"]))
    assert done.returncode == 1
    assert "recorded in ledger entry 1 but missing: the recording's output was deleted" in done.stdout


def test_rewritten_ledger_fails(signed_run, copy):
    entry_path = copy / "ledger" / "0000000001.json"
    entry = json.loads(entry_path.read_bytes())
    entry["run_id"] = "someone-else"
    entry_path.write_bytes(json.dumps(entry, sort_keys=True).encode() + b"\n")
    done = _verify(copy, "--trust", str(signed_run["pub"]))
    assert done.returncode == 1 and "ledger entry's signature is not from a trusted key" in done.stdout


def test_truncated_ledger_fails_against_the_recorded_head(signed_run, copy):
    shutil.rmtree(copy / "ledger")
    done = _verify(copy, "--trust", str(signed_run["pub"]), "--head", signed_run["summary"]["ledger_head"])
    assert done.returncode == 1
    assert "is missing (the ledger was truncated)" in done.stdout
    assert "not recorded in the ledger" in done.stdout


def test_query_over_an_altered_file_errors_naming_it(signed_run, copy):
    from vigil.uri import file_uri

    before = _vigil("query", "presence", file_uri(copy), "--format", "json")
    assert before.returncode == 0 and len(json.loads(before.stdout)) == 6
    manifest = json.loads(next((copy / "manifests").glob("*.json")).read_bytes())
    target = copy / manifest["derived"]["presence"]["path"]
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(target).slice(0, 1), target)
    for args in (("query", "presence", file_uri(copy)), ("report", manifest["recording_id"], file_uri(copy))):
        done = _vigil(*args, cwd=copy.parent)
        assert done.returncode == 2, done.stdout
        assert target.name in done.stderr and "was changed after it was written" in done.stderr


def test_exported_package_moved_elsewhere_verifies_with_vigil_and_with_openssl_alone(signed_run, tmp_path):
    from vigil.uri import file_uri

    done = _vigil("export", file_uri(signed_run["out"]), "--to", str(tmp_path / "package"),
                  env={"VIGIL_TSA_ROOTS": str(signed_run["tsa"].root)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    moved = tmp_path / "elsewhere" / "case-42"
    moved.parent.mkdir()
    (tmp_path / "package").rename(moved)
    assert (moved / "PROCESSING.md").read_text().count(signed_run["summary"]["recording_id"]) >= 1
    trusted = _vigil("verify", "--quiet", file_uri(moved), "--trust", str(moved / "pub.pem"),
                     "--tsa-roots", str(moved / "tsa-roots.pem"), env={"VIGIL_TSA_ROOTS": ""})  # fmt: skip
    assert trusted.returncode == 0, trusted.stdout

    commands = [line[6:] for line in (moved / "VERIFY.txt").read_text().splitlines() if line.startswith("    $ ")]
    assert any("openssl pkeyutl -verify" in c for c in commands) and any("openssl ts -verify" in c for c in commands)
    assert any("sha256sum -c" in c for c in commands)

    def run_all() -> list[subprocess.CompletedProcess]:
        return [subprocess.run(["bash", "-c", c], cwd=moved, capture_output=True, text=True) for c in commands]

    assert [r.returncode for r in run_all()] == [0] * len(commands), [r.stdout + r.stderr for r in run_all()]
    # The same commands catch tampering: a flipped byte in a manifest fails its signature and timestamp.
    manifest = next((moved / "manifests").glob("*.json"))
    manifest.write_bytes(manifest.read_bytes().replace(b'"duration_s": 139.4', b'"duration_s": 139.5'))
    failed = [c for c, r in zip(commands, run_all()) if r.returncode != 0]
    assert any("pkeyutl" in c for c in failed) and any("ts -verify" in c for c in failed)


def test_verify_without_trust_still_reads_the_ledger(signed_run, copy):
    """Unauthenticated, but not blind: a deleted recording or a removed ledger shows without --trust."""
    removed = copy.parent / "removed"
    shutil.copytree(copy, removed)
    shutil.rmtree(removed / "ledger")
    done = _verify(removed)
    assert done.returncode == 1 and "not recorded in the ledger" in done.stdout and "is missing or emptied" in done.stdout
    for path in list(copy.rglob("*")):
        if path.is_file() and ("recording_id=" in str(path) or path.parent.name == "manifests"):
            path.unlink()
    done = _verify(copy)
    assert done.returncode == 1 and "the recording's output was deleted" in done.stdout
