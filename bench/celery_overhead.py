"""Per-shard task time on the Celery deployment of the tests (tests/test_celery.py's Cluster:
PostgreSQL, Redis, api-server, scheduler, dag-processor), with a cold worker and a warm one
(``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=vigil.orchestration.worker.CELERY_CONFIG``), in
alternating turns: the same footage from the S3 endpoint, one shard per ``detect`` task.

Per detect task instance: queued -> running (scheduler and Celery dispatch), running -> body
(fork, task SDK, DAG parse: ``task_start_s`` from the task's ``vigil-overhead`` log line), the
body's imports, the shard itself (``shard_s``: S3, model, frames, publish) and the whole task.
``bench/shard_overhead.py`` splits ``shard_s`` into its stages.

    PYTHONPATH=tasks YOLO_OFFLINE=1 python bench/celery_overhead.py --turns 2 --json bench/results/celery-overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
WARM = {"AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "vigil.orchestration.worker.CELERY_CONFIG"}


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _log_figures(home: Path, run_id: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"task_start_s": [], "imports_s": [], "shard_s": []}
    for log in (home / "logs").rglob("*"):
        if log.is_file() and run_id in str(log):
            for line in log.read_text(errors="ignore").splitlines():
                for name in found:
                    if "vigil-overhead" in line and f"{name}=" in line:
                        found[name].append(float(re.search(rf"{name}=([0-9.]+)", line)[1]))
    return found


def _turn(cluster, mode: str, source: str, out: str, conf: dict) -> dict:
    from test_celery import _free_port

    for name in [n for n in cluster.processes if n.startswith("worker")]:
        cluster.kill_tree(name)
        del cluster.processes[name]
    name = f"worker-{mode}-{time.monotonic_ns()}"
    cluster.start(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "-q", "default"],
                  {**(WARM if mode == "warm" else {}), "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port())})  # fmt: skip
    while "ready." not in (cluster.home / f"{name}.log").read_text(errors="ignore"):
        time.sleep(1)
    run_id = cluster.trigger({**conf, "sources": [source], "out": out})
    assert cluster.wait(run_id, timeout=900) == "success", f"see {cluster.home}"
    tis = cluster.request("GET", f"/api/v2/dags/vigil_process/dagRuns/{run_id}/taskInstances?limit=100")[1]
    detect = [t for t in tis["task_instances"] if t["task_id"] == "detect"]
    logged = _log_figures(cluster.home, f"run_id={run_id}")
    return {
        "mode": mode,
        "tasks": len(detect),
        "queued_to_running_s": [_stamp(t["start_date"]) - _stamp(t["queued_when"]) for t in detect],
        "task_s": [_stamp(t["end_date"]) - _stamp(t["start_date"]) for t in detect],
        **logged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=2, help="cold/warm pairs")
    parser.add_argument("--shard-seconds", type=float, default=20)
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import tempfile

    from conftest import S3_CONN_ID, _free_port
    from moto.server import ThreadedMotoServer
    from test_celery import Cluster

    port = _free_port()
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    os.environ[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"] = json.dumps({
        "conn_type": "aws", "login": "bench", "password": "bench",
        "extra": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"}})  # fmt: skip
    from vigil.store.s3_backend import S3Storage

    s3 = S3Storage.from_conn_id(S3_CONN_ID)
    s3.client.create_bucket(Bucket="bench")
    source = "s3://bench/src/corridor.mp4"
    s3.write_bytes(source, (ROOT / "tests/data/one-by-one-person-detection.mp4").read_bytes())
    home = Path(tempfile.mkdtemp(prefix="vigil-celery-bench-"))
    cluster = Cluster(home, {f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": os.environ[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"],
                             "VIGIL_ALLOWED_CONN_IDS": S3_CONN_ID})  # fmt: skip
    cluster.env["AIRFLOW__CELERY__BROKER_URL"] = "redis://127.0.0.1:6379/9"
    conf = {"sample_fps": args.sample_fps, "shard_seconds": args.shard_seconds, "conn_id": S3_CONN_ID}
    turns = []
    try:
        cluster.up({"worker-first": {}}, {})
        for turn in range(args.turns):
            for mode in ("cold", "warm"):
                turns.append(_turn(cluster, mode, source, f"s3://bench/out-{turn}-{mode}", conf))
                print(mode, {k: round(statistics.median(v), 3) for k, v in turns[-1].items() if isinstance(v, list) and v},
                      file=sys.stderr)  # fmt: skip
    finally:
        cluster.down()
    report = {"shard_seconds": args.shard_seconds, "sample_fps": args.sample_fps, "turns": args.turns,
              "loadavg": open("/proc/loadavg").read().split()[:3]}  # fmt: skip
    for mode in ("cold", "warm"):
        runs = [t for t in turns if t["mode"] == mode]
        report[mode] = {key: round(statistics.median(v for r in runs for v in r[key]), 3)
                        for key in ("queued_to_running_s", "task_s", "task_start_s", "imports_s", "shard_s")
                        if any(r[key] for r in runs)}  # fmt: skip
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    os._exit(0)  # moto's server thread


if __name__ == "__main__":
    main()
