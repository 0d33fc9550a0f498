"""1,000 hours from one trigger: the CeleryExecutor harness (two warm workers, PostgreSQL, Redis)
with ``max_map_length`` 32, on a drop of ten 100-hour recordings built from the sample footage
(6 s of pictures, a recorder gap of 100 h, 6 s more: how a motion-triggered recorder's exports
look). 260 shards of 4 h in batches of at most 32 mapped tasks; one worker is SIGKILLed in the middle
of a detect batch and replaced; the output must equal the embedded run's, shard for shard.

The figures (task instances, metadata rows, wall time, time per shard) go to stdout and, where
``VIGIL_SCALE_FIGURES`` names a file, into it as JSON (README "Scale" quotes them).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path

import pytest

import corpus
from conftest import S3_CONN_ID, _free_port
from test_celery import Cluster, _paused_task_logs, _reachable, _rows
from vigil.orchestration.drop import FAILED, FINALIZED, LEFT_FOR_LATER

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

RECORDINGS = 10
GAP_S = 100 * 3600  # each recording spans 100 h and 12 s
CONF = {"sample_fps": 0.5, "shard_seconds": 14400, "conn_id": S3_CONN_ID}
MAP_LIMIT = 32
REDIS_DB = 8  # not test_celery's, so both may run at once


@pytest.fixture(scope="module")
def drop(tmp_path_factory, footage):
    """Ten recordings, each with its own gap length (so each has its own hash)."""
    folder = tmp_path_factory.mktemp("drop-1000h")
    return [corpus.recorder_gap(footage, folder / f"cam{i:02d}.mkv", gap_s=GAP_S + i) for i in range(RECORDINGS)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, drop):
    """The same drop through the embedded default (file://, no Airflow, one process)."""
    from vigil.cli import main
    from vigil.uri import file_uri

    out = file_uri(tmp_path_factory.mktemp("embedded") / "out")
    args = ["--sample-fps", str(CONF["sample_fps"]), "--shard-seconds", str(CONF["shard_seconds"])]
    assert main(["process", *(file_uri(p) for p in drop), "--out", out, *args]) == 0
    return _rows(out)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_endpoint):
    if not (_reachable(5432) and _reachable(6379)):
        pytest.skip("PostgreSQL and Redis must run on 127.0.0.1 (bash .ci/run starts them)")
    home = tmp_path_factory.mktemp("celery-scale")
    cluster = Cluster(home, {
        f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": os.environ[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"],
        "VIGIL_ALLOWED_CONN_IDS": S3_CONN_ID,
        "AIRFLOW__CORE__MAX_MAP_LENGTH": str(MAP_LIMIT),
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "vigil.orchestration.worker.CELERY_CONFIG",
    })  # fmt: skip
    broker = f"redis://127.0.0.1:6379/{REDIS_DB}"
    cluster.env["AIRFLOW__CELERY__BROKER_URL"] = broker
    cluster.arm = home / "arm-worker-a"
    try:
        cluster.up({"worker-a": {"VIGIL_PAUSE_AT": "inference", "VIGIL_PAUSE_IF": str(cluster.arm)}, "worker-b": {}}, {})
        yield cluster
    finally:
        cluster.down()
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()


def _task_instances(cluster: Cluster, run_id: str) -> list[dict]:
    found, offset = [], 0
    while True:
        path = f"/api/v2/dags/vigil_process/dagRuns/{run_id}/taskInstances?limit=100&offset={offset}"
        page = cluster.request("GET", path)[1]["task_instances"]
        found += page
        if len(page) < 100:
            return found
        offset += 100


def _run_killing_worker_a_midway(cluster: Cluster, run_id: str, timeout: float = 900) -> tuple[str, float]:
    """Arm worker-a once a third of the detect batches are done; SIGKILL its whole process tree
    when it stops inside a shard, then start a fresh worker-a (a replacement node)."""
    deadline, killed_at = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        tis = _task_instances(cluster, run_id)
        detect = [t for t in tis if t["task_id"] == "detect" and t["map_index"] >= 0]  # once expanded
        if killed_at is None and not cluster.arm.exists():
            if len(detect) > 1 and sum(t["state"] == "success" for t in detect) >= len(detect) // 3:
                cluster.arm.touch()
        if killed_at is None and _paused_task_logs(cluster.home):
            cluster.kill_tree("worker-a")
            killed_at = time.monotonic()
            cluster.arm.unlink()
            cluster.start("worker-a2", ["celery", "worker", "--celery-hostname", "worker-a2@%h", "-q", "default"],
                          {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port())})  # fmt: skip
        state = cluster.request("GET", f"/api/v2/dags/vigil_process/dagRuns/{run_id}")[1].get("state")
        if state in ("success", "failed"):
            return state, killed_at
        time.sleep(3)
    raise TimeoutError(f"run {run_id} did not finish in {timeout} s; see {cluster.home}")


def _metadata_rows(cluster: Cluster) -> dict[str, int]:
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", user="vigil_ci", password="vigil_ci", dbname=cluster.database) as db:
        cursor = db.cursor()
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        counts = {}
        for (table,) in cursor.fetchall():
            cursor.execute(f'SELECT count(*) FROM "{table}"')
            counts[table] = cursor.fetchone()[0]
    return {table: n for table, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n}


def _overhead_lines(home: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"task_start_s": [], "imports_s": [], "shard_s": []}
    for log in (home / "logs").rglob("*"):
        if log.is_file():
            for line in log.read_text(errors="ignore").splitlines():
                if "vigil-overhead" in line:
                    for name in found:
                        if f"{name}=" in line:
                            found[name].append(float(re.search(rf"{name}=([0-9.]+)", line)[1]))
    return found


def test_a_1000_hour_drop_from_one_trigger_survives_a_killed_worker(cluster, s3_storage, drop, reference):
    prefix = f"s3://{s3_storage.buckets['source']}/drop-1000h/"
    for path in drop:
        s3_storage.write_bytes(prefix + path.name, path.read_bytes())
    out = f"s3://{s3_storage.buckets['out']}/scale"
    began = time.monotonic()
    run_id = cluster.trigger({**CONF, "sources": [prefix], "out": out})
    state, killed_at = _run_killing_worker_a_midway(cluster, run_id)
    wall = time.monotonic() - began
    tis = _task_instances(cluster, run_id)
    detect = [t for t in tis if t["task_id"] == "detect"]
    shards_per_recording = -(-(GAP_S + 12) // CONF["shard_seconds"])
    overhead = _overhead_lines(cluster.home)
    busy = sum((_seconds(t["end_date"]) - _seconds(t["start_date"])) for t in detect if t["end_date"] and t["start_date"])
    figures = {
        "recording_hours": round(RECORDINGS * (GAP_S + 12) / 3600, 1),
        "shards": RECORDINGS * shards_per_recording,
        "max_map_length": MAP_LIMIT,
        "task_instances": len(tis),
        "detect_task_instances": len(detect),
        "wall_s": round(wall, 1),
        "kill_to_end_s": round(time.monotonic() - killed_at, 1) if killed_at else None,
        "detect_busy_s_per_shard": round(busy / (RECORDINGS * shards_per_recording), 3),
        "shard_s_median": _median(overhead["shard_s"]),
        "task_start_s_median": _median(overhead["task_start_s"]),
        "imports_s_median": _median(overhead["imports_s"]),
        "metadata_rows": _metadata_rows(cluster),
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }
    print("scale figures:", json.dumps(figures, indent=1))
    if os.environ.get("VIGIL_SCALE_FIGURES"):
        Path(os.environ["VIGIL_SCALE_FIGURES"]).write_text(json.dumps(figures, indent=1) + "\n")
    assert state == "success", f"see {cluster.home}"
    assert killed_at is not None, "worker-a never stopped inside a shard: the fault case did not happen"

    assert 1 < len(detect) <= MAP_LIMIT, "the shards went out in batches within max_map_length"
    assert any(t["try_number"] > 1 for t in detect), "the killed batch was retried"

    # Nothing lost, nothing duplicated: the embedded run's rows, each once.
    rows = _rows(out, S3_CONN_ID)
    assert rows == reference
    from vigil.review import query

    count, distinct = query.connect(out, S3_CONN_ID).execute(
        "SELECT count(*), count(DISTINCT (recording_id, pts_s)) FROM frames").fetchone()  # fmt: skip
    assert count == distinct, "a frame's row twice"

    # One trigger; every recording finalized with its manifest; one published file set per shard.
    summary = cluster.request("GET", f"/api/v2/dags/vigil_process/dagRuns/{run_id}/taskInstances/finalize/"
                                     "xcomEntries/return_value")[1]["value"]  # fmt: skip
    summary = json.loads(summary) if isinstance(summary, str) else summary
    assert summary["counts"] == {FINALIZED: RECORDINGS, FAILED: 0, LEFT_FOR_LATER: 0}
    keys = [o.uri for o in s3_storage.list(out + "/") if "/frames/" in o.uri]
    assert len(keys) == len(set(keys)) == RECORDINGS * shards_per_recording
    for row in summary["recordings"]:
        assert s3_storage.stat(row["manifest_uri"]).size > 0, row
    runs = cluster.request("GET", "/api/v2/dags/vigil_process/dagRuns")[1]
    assert runs["total_entries"] == 1, "one trigger, one run"


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _median(values: list[float]) -> float | None:
    return round(sorted(values)[len(values) // 2], 3) if values else None
