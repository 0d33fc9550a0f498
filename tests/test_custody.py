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
    # An investigator's exhibits and verdicts, made with the same operator key: ledger entries 2 and 3.
    clip = _vigil("clip", file_uri(base / "out"), "corridor", "--from", "20", "--to", "24", env=env)
    assert clip.returncode == 0, clip.stderr
    review = _vigil("review", file_uri(base / "out"), "corridor", "--track", "1", "--decision", "confirmed",
                    "--note", "seen twice", "--reviewer", "analyst-1", env=env)  # fmt: skip
    assert review.returncode == 0, review.stderr
    yield {"base": base, "out": base / "out", "pub": base / "pub.pem", "other": base / "other.pem", "tsa": tsa,
           "env": env, "summary": summary}  # fmt: skip
    tsa.stop()


@pytest.fixture
def copy(signed_run, tmp_path) -> Path:
    shutil.copytree(signed_run["out"], tmp_path / "out")
    return tmp_path / "out"


def _record(out: Path, folder: str) -> Path:
    """The one clip record or review decision of the signed run."""
    return next(p for p in (out / folder).glob("recording_id=*/*.json"))


def _reseal(path: Path, **changes) -> None:
    from vigil.store.manifest import manifest_bytes

    path.write_bytes(manifest_bytes({**json.loads(path.read_bytes()), **changes}))


def _rewrite_ledger(out: Path, record: Path, key: Path | None = None) -> None:
    """What a forger with write access does next: put the new record's hash in its ledger entry and
    recompute the chain after it, signing with their own key (or none)."""
    import base64
    import dataclasses
    import hashlib

    from vigil.store import ledger, signing

    signer = signing.configured_signer({signing.KEY_ENV: str(key)}) if key else None
    path, prev = str(record.relative_to(out)), ledger.GENESIS
    for entry_path in sorted((out / "ledger").glob("*.json")):
        entry = ledger.parse(entry_path.read_bytes(), str(entry_path))
        entry = dataclasses.replace(entry, prev=prev)  # without a key, the old entry signature stays
        if entry.manifest == path:
            data = record.read_bytes()
            entry = dataclasses.replace(entry, manifest_sha256=hashlib.sha256(data).hexdigest())
            if signer:
                sig = signer.sign(data)
                entry = dataclasses.replace(entry, signature=base64.b64encode(sig).decode(), key_fingerprint=signer.fingerprint)
                Path(f"{record}.sig").write_bytes(sig)
                Path(f"{record}.sig.key").write_bytes(signing.key_name_bytes(signer.fingerprint))
        if signer:
            entry = dataclasses.replace(entry, entry_signature=base64.b64encode(signer.sign(entry.body_bytes())).decode())
        entry_path.write_bytes(entry.to_bytes())
        prev = hashlib.sha256(entry_path.read_bytes()).hexdigest()


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
    _rewrite_ledger(copy, manifest_path)
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


def test_readers_rely_only_on_manifests_the_ledger_vouches_for(signed_run, copy, monkeypatch):
    """A manifest anyone could write (sealed by its own hash) adds no recording to an answer,
    shadows no real one with a later run, and stops no recording from being processed."""
    from vigil.config import ProcessParams, RunRequest
    from vigil.orchestration import planning
    from vigil.orchestration.view_guard import ManifestCache
    from vigil.review import query
    from vigil.review.decisions import load_decisions
    from vigil.store.manifest import manifest_bytes
    from vigil.store.storage import storage_for
    from vigil.uri import file_uri

    out = file_uri(copy)
    genuine_path = next((copy / "manifests").glob("*.json"))
    genuine = json.loads(genuine_path.read_bytes())
    ghost = {**genuine, "recording_id": "ghost-0123456789ab"}
    later = {**genuine, "finalized_at": "2099-01-01T00:00:00+00:00", "totals": {**genuine["totals"], "persons_max": 0}}
    for name, record in (("ghost-0123456789ab.forged.json", ghost), (genuine_path.name.replace(".json", ".later.json"), later)):
        (copy / "manifests" / name).write_bytes(manifest_bytes(record))

    listed = query.manifests(out)
    assert [(m.recording_id, m.finalized_at) for m in listed] == [(genuine["recording_id"], genuine["finalized_at"])]
    page = ManifestCache().listing(storage_for(out), out)
    assert [m.finalized_at for m in page.manifests] == [genuine["finalized_at"]]
    assert len(page.problems) == 2 and all("not recorded in the ledger" in why for _, why in page.problems)
    decision = _record(copy, "reviews")
    real = json.loads(decision.read_bytes())
    decision.with_name("forged.json").write_bytes(manifest_bytes({**real, "record_id": "forged", "decision": "rejected"}))
    assert [r["record_id"] for r in load_decisions(out)] == [real["record_id"]]

    request = RunRequest((file_uri(signed_run["base"] / "source" / "corridor.mp4"),), out,
                         ProcessParams(sample_fps=0.5, shard_seconds=60))  # fmt: skip
    recordings = planning.discover(request)
    assert planning.unprocessed(request, recordings) == []  # the genuine manifest: done
    genuine_path.write_bytes(manifest_bytes({**genuine, "totals": {**genuine["totals"], "persons_max": 0}}))
    assert planning.unprocessed(request, recordings) == recordings  # replaced: not what the ledger recorded
    assert query.manifests(out) == []

    # A forger who also rewrites the ledger, without the deployment's key: taken where the
    # deployment signs nothing (the ledger is then not authenticated), left out where it signs.
    _rewrite_ledger(copy, genuine_path)
    assert [m.recording_id for m in query.manifests(out)] == [genuine["recording_id"]]
    monkeypatch.setenv("VIGIL_TRUSTED_KEYS", f"{signed_run['other']},{signed_run['pub']}")  # a reader without the private key
    assert query.manifests(out) == [] and load_decisions(out) == []  # the chain breaks at the rewritten entry
    assert planning.unprocessed(request, recordings) == recordings
    monkeypatch.delenv("VIGIL_TRUSTED_KEYS")
    monkeypatch.setenv("VIGIL_SIGNING_KEY", signed_run["env"]["VIGIL_SIGNING_KEY"])  # a worker
    assert query.manifests(out) == []


def test_what_a_forger_adds_to_a_signed_ledger_vouches_for_nothing_and_breaks_no_reader(signed_run, copy, monkeypatch):
    import hashlib

    from vigil.review import query
    from vigil.review.decisions import load_decisions
    from vigil.store import ledger
    from vigil.store.manifest import manifest_bytes
    from vigil.store.storage import storage_for
    from vigil.uri import file_uri

    out = file_uri(copy)
    monkeypatch.setenv("VIGIL_TRUSTED_KEYS", str(signed_run["pub"]))  # a reader holding only the public key
    real = json.loads(next((copy / "manifests").glob("*.json")).read_bytes())
    ghost = manifest_bytes({**real, "recording_id": "ghost-0123456789ab"})
    (copy / "manifests" / "ghost-0123456789ab.x.json").write_bytes(ghost)
    ledger.append(storage_for(out), out, "manifests/ghost-0123456789ab.x.json", hashlib.sha256(ghost).hexdigest(),
                  None, None, "forger")  # entry 4, linked but unsigned  # fmt: skip
    (copy / "ledger" / "0000000005.json").write_text("[" * 200_000)
    (copy / "ledger" / "junk.json").write_text('{"manifest": []}')
    assert [m.recording_id for m in query.manifests(out)] == [real["recording_id"]]  # entries 1-3 still vouch
    assert len(load_decisions(out)) == 1

    shutil.rmtree(copy / "ledger")  # and no ledger at all: with a trusted key, nothing is vouched for
    unledgered = {k: v for k, v in json.loads(ghost).items() if k != "ledger"}
    (copy / "manifests" / "ghost-0123456789ab.x.json").write_bytes(manifest_bytes(unledgered))
    assert query.manifests(out) == []


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
    # The clip and the decision travel with their records, signatures and tokens, and are listed.
    clip_record, decision = _record(moved, "clips"), _record(moved, "reviews")
    for record in (clip_record, decision):
        assert Path(f"{record}.sig").is_file() and list(record.parent.glob(record.name + ".tsa-*.tsr"))
    clip_path = json.loads(clip_record.read_bytes())["clip_path"]
    assert clip_path in (moved / "SHA256SUMS").read_text() and (moved / clip_path).is_file()
    processing = (moved / "PROCESSING.md").read_text()
    assert clip_path in processing and "| confirmed | analyst-1 |" in processing
    assert set(json.loads((moved / "export.json").read_bytes())["records"]) == {
        str(clip_record.relative_to(moved)), str(decision.relative_to(moved))}
    # The same commands catch tampering: a changed decision fails its signature and timestamp, a
    # changed clip its hash; so does a flipped byte in a manifest.
    decision.write_bytes(decision.read_bytes().replace(b'"confirmed"', b'"rejected"'))
    failed = [c for c, r in zip(commands, run_all()) if r.returncode != 0]
    assert any("pkeyutl" in c for c in failed) and any("ts -verify" in c for c in failed), failed
    decision.write_bytes(decision.read_bytes().replace(b'"rejected"', b'"confirmed"'))
    clip = bytearray((moved / clip_path).read_bytes())
    clip[len(clip) // 2] ^= 0xFF
    (moved / clip_path).write_bytes(bytes(clip))
    assert [c for c, r in zip(commands, run_all()) if r.returncode != 0] == ["sha256sum -c --quiet SHA256SUMS"]
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


# ---------------------------------------------------------------- clips and review decisions


def test_clip_records_and_decisions_are_signed_ledgered_and_timestamped(signed_run):
    done = _vigil("verify", f"file://{signed_run['out']}", "--trust", str(signed_run["pub"]),
                  "--tsa-roots", str(signed_run["tsa"].root), "--head", signed_run["summary"]["ledger_head"])  # fmt: skip
    assert done.returncode == 0, done.stdout
    for folder in ("clips", "reviews"):
        record = _record(signed_run["out"], folder)
        assert f"{record}: signed by trusted key sha256:" in done.stdout
        assert f"{record}.tsa-" in done.stdout and "timestamp attests 20" in done.stdout
    assert "3 entries, chain whole" in done.stdout


def test_forged_clip_file_fails(signed_run, copy):
    clip = next((copy / "clips").rglob("*.mp4"))
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0xFF
    clip.write_bytes(bytes(data))
    done = _verify(copy, "--trust", str(signed_run["pub"]))
    assert done.returncode == 1 and f"{clip.name}: SHA-256 differs from its record" in done.stdout


def test_forged_clip_with_a_resealed_record_fails_only_with_trust(signed_run, copy):
    """Another clip put in place of the exhibit, its hash put in the record, the record resealed."""
    import hashlib

    record = _record(copy, "clips")
    clip = copy / json.loads(record.read_bytes())["clip_path"]
    forged = clip.read_bytes()[:-4096]
    clip.write_bytes(forged)
    _reseal(record, clip_sha256=hashlib.sha256(forged).hexdigest(), clip_bytes=len(forged))
    done = _verify(copy)
    assert done.returncode == 1 and "not the clip record the ledger recorded" in done.stdout and "replaced" in done.stdout
    _rewrite_ledger(copy, record)  # ...and the ledger, consistently: unauthenticated, nothing shows
    assert _verify(copy).returncode == 0
    done = _verify(copy, "--trust", str(signed_run["pub"]))
    assert done.returncode == 1
    assert f"{record}: signature is not from a trusted key" in done.stdout and "the clip record was altered" in done.stdout
    assert "ledger entry's signature is not from a trusted key" in done.stdout


def test_forged_review_decision_fails(signed_run, copy):
    """A decision nobody made, added beside the real one."""
    import shutil

    real = _record(copy, "reviews")
    forged = real.with_name("20990101T000000000000Z-forged00.json")
    shutil.copy(real, forged)
    _reseal(forged, record_id=forged.stem, decision="rejected")
    done = _verify(copy)  # it says it is in the ledger, and is not
    assert done.returncode == 1 and f"{forged}: not recorded in the ledger" in done.stdout
    body = json.loads(forged.read_bytes())
    del body["ledger"]  # ...so the forger says it is older than the ledger: only a key tells
    from vigil.store.manifest import manifest_bytes

    forged.write_bytes(manifest_bytes(body))
    assert _verify(copy).returncode == 0
    done = _verify(copy, "--trust", str(signed_run["pub"]))
    assert done.returncode == 1
    assert f"{forged}: unsigned" in done.stdout and f"{forged}: not recorded in the ledger" in done.stdout


def test_deleted_review_decision_fails(signed_run, copy):
    decision = _record(copy, "reviews")
    for path in decision.parent.glob(decision.name + "*"):
        path.unlink()
    for args in ((), ("--trust", str(signed_run["pub"]))):
        done = _verify(copy, *args)
        assert done.returncode == 1
        assert f"{decision}: recorded in ledger entry 3 but missing: the review decision was deleted" in done.stdout


def test_decision_rewritten_by_someone_without_the_key_fails(signed_run, copy):
    """Confirmed becomes rejected; record, signature and ledger redone with the forger's own key."""
    decision = _record(copy, "reviews")
    _reseal(decision, decision="rejected")
    _rewrite_ledger(copy, decision, key=signed_run["base"] / "other.key")
    assert _verify(copy).returncode == 0  # consistent, so only a trusted key can tell
    done = _verify(copy, "--trust", str(signed_run["pub"]))
    assert done.returncode == 1
    assert f"{decision}: signature is not from a trusted key (it names sha256:" in done.stdout
    assert "or the review decision was altered" in done.stdout
    assert "ledger entry's signature is not from a trusted key" in done.stdout
