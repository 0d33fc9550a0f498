"""Evidence integrity: hashes, manifests, `vigil verify`, exactly-once shards, crashes, races."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import FOOTAGE_SHA256, S3_CONN_ID

pytestmark = pytest.mark.slow
FAST = ["--sample-fps", "0.5", "--shard-seconds", "60"]  # 70 frames, 3 shards: real model, seconds


def _vigil(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vigil.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})  # fmt: skip


def _rows(out_dir: Path) -> dict[str, list]:
    """Every row of every manifest-listed file, without the files' provenance metadata."""
    from vigil.review import query
    from vigil.uri import file_uri

    con = query.connect(file_uri(out_dir))
    return {
        table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in ("detections", "frames")
    }


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, footage):
    """The reference output: one uninterrupted CLI run."""
    from vigil.uri import file_uri

    base = tmp_path_factory.mktemp("clean")
    source = base / "source" / "corridor.mp4"
    source.parent.mkdir()
    source.write_bytes(footage.read_bytes())
    done = _vigil("process", file_uri(source), "--out", file_uri(base / "out"), *FAST)
    assert done.returncode == 0, done.stderr
    return {"source": source, "out": base / "out", "rows": _rows(base / "out")}


def test_verify_passes_on_a_clean_output(clean_run):
    from vigil.uri import file_uri

    done = _vigil("verify", file_uri(clean_run["out"]))
    assert done.returncode == 0, done.stdout
    from vigil.store.schema import DERIVED_TABLES

    # a manifest, 3 shards x (2 files + their commit marker), the derived tables, the review
    # files, the copy of the recording's MP4 index (store/index_copy.py)
    assert done.stdout.count("ok ") == 1 + 6 + 3 + len(DERIVED_TABLES) + 3 + 1


def _output_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file())


def test_verify_fails_naming_the_file_when_any_byte_is_flipped(clean_run, tmp_path):
    import shutil

    from vigil.uri import file_uri

    for index, original in enumerate(_output_files(clean_run["out"])):
        copy = tmp_path / f"copy{index}"
        shutil.copytree(clean_run["out"], copy)
        target = copy / original.relative_to(clean_run["out"])
        data = bytearray(target.read_bytes())
        data[len(data) // 3] ^= 0x01
        target.write_bytes(bytes(data))
        done = _vigil("verify", "--quiet", file_uri(copy))
        assert done.returncode == 1, f"a flipped byte in {target.name} went unnoticed"
        assert target.name in done.stdout


def test_verify_fails_naming_the_file_when_any_file_is_removed(clean_run, tmp_path):
    import shutil

    from vigil.uri import file_uri

    for index, original in enumerate(_output_files(clean_run["out"])):
        copy = tmp_path / f"copy{index}"
        shutil.copytree(clean_run["out"], copy)
        target = copy / original.relative_to(clean_run["out"])
        target.unlink()
        done = _vigil("verify", "--quiet", file_uri(copy))
        if target.parent.name == "indexes":  # a cache (store/index_copy.py): its loss costs bytes, not evidence
            assert done.returncode == 0, done.stdout
            continue
        assert done.returncode == 1, f"removing {target.name} went unnoticed"
        # a whole ledger removed is named as the ledger: its manifest cannot know its entry's number
        named = {"manifests": "no manifest", "ledger": "ledger"}.get(target.parent.name, target.name)
        assert named in done.stdout


def test_verify_detects_a_gap_between_shards(clean_run, tmp_path):
    import shutil

    from vigil.store.manifest import manifest_bytes
    from vigil.uri import file_uri

    shutil.copytree(clean_run["out"], tmp_path / "out")
    path = next((tmp_path / "out" / "manifests").iterdir())
    manifest = json.loads(path.read_bytes())
    del manifest["shards"][1]  # a re-sealed manifest that silently dropped a shard
    path.write_bytes(manifest_bytes(manifest))
    done = _vigil("verify", "--quiet", file_uri(tmp_path / "out"))
    assert done.returncode == 1
    assert "gap before shard 2 (60.0 s to 120.0 s)" in done.stdout


def test_a_rerun_skips_finished_shards_and_changes_nothing(clean_run):
    from vigil.uri import file_uri

    before = {p: p.read_bytes() for p in _output_files(clean_run["out"]) if p.suffix == ".parquet"}
    done = _vigil("-v", "process", file_uri(clean_run["source"]), "--out", file_uri(clean_run["out"]), *FAST)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("already done") == 3
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize("point", ["decode", "inference", "write"])
def test_a_worker_killed_mid_shard_leaves_nothing_half_done(clean_run, tmp_path, point):
    """SIGKILL at a named point, then run again: the output equals a clean run's, row for row."""
    from vigil.uri import file_uri

    out = tmp_path / "out"
    command = [sys.executable, "-m", "vigil.cli", "process", file_uri(clean_run["source"]), "--out", file_uri(out), *FAST]
    worker = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "VIGIL_PAUSE_AT": point})
    try:
        for line in worker.stderr:
            if line.startswith(f"vigil-paused-at {point}"):
                break
        else:
            pytest.fail(f"the worker finished without reaching {point}")
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    assert not (out / "manifests").exists(), "no manifest for a recording whose shards did not finish"
    published = [p for p in out.rglob("*.parquet")] if out.exists() else []
    for path in published:  # whatever was published before the kill is complete
        pq.read_table(path)
    done = _vigil("process", file_uri(clean_run["source"]), "--out", file_uri(out), *FAST)
    assert done.returncode == 0, done.stderr
    assert _rows(out) == clean_run["rows"]
    assert _vigil("verify", file_uri(out)).returncode == 0


def test_two_attempts_of_one_shard_on_s3_end_with_one_file(s3_storage, footage):
    """Two attempts of the same shard at once (as after a scheduler restart) against the S3 endpoint."""
    from vigil.orchestration import pipeline, planning
    from vigil.config import ProcessParams, RunRequest

    bucket_in, bucket_out = s3_storage.buckets["source"], s3_storage.buckets["out"]
    s3_storage.write_bytes(f"s3://{bucket_in}/cam/corridor.mp4", footage.read_bytes())
    request = RunRequest(
        sources=(f"s3://{bucket_in}/cam/corridor.mp4",),
        out=f"s3://{bucket_out}/vigil",
        params=ProcessParams(sample_fps=0.5, shard_seconds=60),
        source_conn_id=S3_CONN_ID,
        out_conn_id=S3_CONN_ID,
    )
    shard = planning.plan_all(request, planning.discover(request))["shards"][1]
    pipeline.detect_shard(shard)  # warm the model so both attempts overlap in their writes
    s3_storage.client.delete_objects(
        Bucket=bucket_out,
        Delete={"Objects": [{"Key": o.uri.split("/", 3)[3]} for o in s3_storage.list(f"s3://{bucket_out}/vigil")]},
    )
    results, errors = [], []

    def attempt():
        try:
            results.append(pipeline.detect_shard(shard))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    files = [o.uri for o in s3_storage.list(f"s3://{bucket_out}/vigil")]
    assert len(files) == 3, files  # one detections file, one frames file, the shard's commit marker
    assert results[0].files == results[1].files, "both attempts report the one published file"


def test_credentials_never_reach_outputs_or_logs(s3_storage, footage, caplog):
    from vigil.orchestration import pipeline, planning
    from vigil.orchestration.finalize import finalize
    from vigil.config import ProcessParams, RunRequest

    bucket_in, bucket_out = s3_storage.buckets["source"], s3_storage.buckets["out"]
    s3_storage.write_bytes(f"s3://{bucket_in}/cam/corridor.mp4", footage.read_bytes())
    request = RunRequest(
        sources=(f"s3://{bucket_in}/cam/",), out=f"s3://{bucket_out}/vigil",
        params=ProcessParams(sample_fps=0.25, shard_seconds=600), source_conn_id=S3_CONN_ID, out_conn_id=S3_CONN_ID,
    )  # fmt: skip
    with caplog.at_level("DEBUG", logger="vigil"):
        planned = planning.plan_all(request, planning.discover(request))
        finalize([pipeline.detect_shard(s) for s in planned["shards"]], planned["failed"])
    written = b"".join(s3_storage.read_bytes(o.uri) for o in s3_storage.list(f"s3://{bucket_out}/vigil"))
    for secret in (b"testing-secret", b"testing-key"):
        assert secret not in written
        assert secret.decode() not in caplog.text
    assert "testing-secret" not in repr(s3_storage.settings)


# --------------------------------------------------------------------- what the source must be


def test_a_recording_whose_hash_differs_is_not_analysed(tmp_path, footage):
    from vigil.uri import file_uri

    source = tmp_path / "drop" / "cam1.mp4"
    source.parent.mkdir()
    source.write_bytes(footage.read_bytes())
    wrong = "0" * 64
    done = _vigil("process", file_uri(source), "--out", file_uri(tmp_path / "out"), "--expected-sha256", wrong, *FAST)
    assert done.returncode == 2
    assert FOOTAGE_SHA256 in done.stderr and wrong in done.stderr
    assert not (tmp_path / "out").exists(), "nothing is written for a recording that fails its hash"


def test_a_sha256_sidecar_is_honoured(tmp_path, footage):
    from vigil.uri import file_uri

    source = tmp_path / "drop" / "cam1.mp4"
    source.parent.mkdir()
    source.write_bytes(footage.read_bytes())
    (tmp_path / "drop" / "cam1.mp4.sha256").write_text(f"{'ab' * 32}  cam1.mp4\n")
    done = _vigil("process", file_uri(tmp_path / "drop"), "--out", file_uri(tmp_path / "out"), *FAST)
    assert done.returncode == 2
    assert "the sidecar" in done.stderr and "ab" * 32 in done.stderr
    (tmp_path / "drop" / "cam1.mp4.sha256").write_text(f"{FOOTAGE_SHA256}  cam1.mp4\n")
    assert _vigil("process", file_uri(tmp_path / "drop"), "--out", file_uri(tmp_path / "out"), *FAST).returncode == 0


def test_buckets_outside_the_allow_list_are_refused(monkeypatch):
    from vigil.config import RunRequest
    from vigil.errors import ParameterError

    monkeypatch.setenv("VIGIL_ALLOWED_BUCKETS", "evidence-intake, vigil-results")
    RunRequest(sources=("s3://evidence-intake/drop/",), out="s3://vigil-results/out")
    with pytest.raises(ParameterError, match="'someone-elses' .* not in VIGIL_ALLOWED_BUCKETS"):
        RunRequest(sources=("s3://someone-elses/drop/",), out="s3://vigil-results/out")


def test_a_recording_that_vanishes_after_listing_fails_alone(s3_storage, footage):
    from vigil.orchestration import planning
    from vigil.config import ProcessParams, RunRequest

    bucket = s3_storage.buckets["source"]
    for name in ("a.mp4", "b.mp4"):
        s3_storage.write_bytes(f"s3://{bucket}/drop/{name}", footage.read_bytes())
    request = RunRequest(
        sources=(f"s3://{bucket}/drop/",), out=f"s3://{s3_storage.buckets['out']}/o",
        params=ProcessParams(sample_fps=0.5), source_conn_id=S3_CONN_ID, out_conn_id=S3_CONN_ID,
    )  # fmt: skip
    listed = planning.discover(request)
    s3_storage.delete(f"s3://{bucket}/drop/a.mp4")
    planned = planning.plan_all(request, listed)
    assert [f["uri"] for f in planned["failed"]] == [f"s3://{bucket}/drop/a.mp4"]
    assert "no such object" in planned["failed"][0]["error"]
    assert {s.plan.source.uri for s in planned["shards"]} == {f"s3://{bucket}/drop/b.mp4"}
