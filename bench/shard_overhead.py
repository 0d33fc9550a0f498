"""What one shard costs beyond its frames, in a cold task process and in one forked from a warm
Celery worker (``vigil.orchestration.worker``), A/B in alternating turns.

Each turn runs one shard of the sample footage from the S3 endpoint (moto over HTTP, as the
tests) to Parquet in S3, the way a ``detect`` task does (``pipeline.detect_shard``), in a process
that is either

* cold: a fresh interpreter, as every Airflow 3 task was (the task SDK forks the Celery pool
  process for each task, and that process had imported nothing of vigil's), or
* warm: forked from a parent that ran ``worker.warm()``, as tasks are once workers start with
  ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=vigil.orchestration.worker.CELERY_CONFIG``.

and reports, per shard, seconds spent in

* task start: parsing the DAG file (``dags/vigil_process.py``, which the task runner imports in
  every task process) — the rest of Airflow's start (fork, SDK, API calls) is in the Celery
  figures of ``tests/test_scale.py``;
* imports: torch, ultralytics, openvino, vigil's pipeline;
* model: hash-checking the weights, loading, and compiling (the first inference of a shape and
  batch size, less what the same frames cost warm);
* S3: storage client, the read of the shard's commit marker (an earlier attempt's output), stat and open of the recording;
* publish: Parquet encoding, the conditional PUTs of the shard's three tables and its commit marker;
* frames: decoding and inference of the shard's sampled frames (what the shard is for).

``overhead = everything but frames``; the shortest shard for which overhead stays under 10 % is
``overhead / (0.1 × frames cost per shard-second)``.

    PYTHONPATH=tasks YOLO_OFFLINE=1 python bench/shard_overhead.py --turns 3 --json bench/results/shard-overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = ROOT / "tests" / "data" / "one-by-one-person-detection.mp4"
STAGES = ("task_start", "imports", "model", "s3", "publish", "frames")


class Clock:
    """Seconds spent inside wrapped functions, per stage (an outer stage excludes inner ones)."""

    def __init__(self):
        self.spent = dict.fromkeys(STAGES, 0.0)
        self.detect_calls: list[tuple[int, float]] = []
        self._stack: list[str] = []

    def wrap(self, owner, name: str, stage: str) -> None:
        original = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            clock._stack.append(stage)
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                took = time.perf_counter() - began
                clock._stack.pop()
                if stage not in clock._stack:  # count a stage once when it nests in itself
                    clock.spent[stage] += took
                    for outer in set(clock._stack) - {stage}:
                        clock.spent[outer] -= took
                if stage == "frames" and name == "detect":
                    clock.detect_calls.append((len(args[-1]), took))

        setattr(owner, name, timed)


def one_shard(task_dict: dict, warm: bool) -> dict:
    """Run one shard the way a detect task does; seconds per stage."""
    clock, began = Clock(), time.perf_counter()
    runpy.run_path(str(ROOT / "dags" / "vigil_process.py"))  # the task runner parses the DAG file
    clock.spent["task_start"] = time.perf_counter() - began
    began = time.perf_counter()
    import openvino  # noqa: F401
    import torch  # noqa: F401
    import ultralytics.engine.predictor  # noqa: F401

    from vigil.orchestration import pipeline

    clock.spent["imports"] = time.perf_counter() - began
    from vigil.model import detector
    from vigil.store import s3_backend, sink, weights
    from vigil.store.contracts import ShardTask

    clock.wrap(weights, "resolve_model", "model")
    clock.wrap(detector, "load_detector", "model")
    clock.wrap(detector.PoseDetector, "detect", "frames")
    clock.wrap(detector.PoseDetector, "_model_for", "model")
    from vigil.model import openvino_pose

    clock.wrap(openvino_pose.OpenVINOPose, "_load", "model")  # compiling again after a fork happens in detect
    clock.wrap(s3_backend.S3Storage, "from_conn_id", "s3")
    for name in ("stat", "open"):
        clock.wrap(s3_backend.S3Storage, name, "s3")
    clock.wrap(pipeline, "committed_files", "s3")  # the shard's commit marker, if an attempt finished
    clock.wrap(pipeline, "commit_shard", "publish")
    clock.wrap(sink, "publish", "publish")
    clock.wrap(sink, "parquet_bytes", "publish")
    began = time.perf_counter()
    pipeline.detect_shard(ShardTask.from_dict(task_dict))
    total = time.perf_counter() - began
    clock.spent["frames"] += total - sum(clock.spent[s] for s in ("model", "s3", "publish", "frames"))
    return {"spent": clock.spent, "detect_calls": clock.detect_calls, "warm": warm}


def _child(task_dict: dict, warm: bool) -> dict:
    """``one_shard`` in a forked child (this process's imports and model are what it inherits)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            data = json.dumps(one_shard(task_dict, warm)).encode()
        except BaseException as exc:  # noqa: BLE001 - report, then leave without running the parent's code
            data = json.dumps({"error": repr(exc)}).encode()
        with os.fdopen(write, "wb") as pipe:
            pipe.write(data)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    found = json.loads(data)
    if "error" in found:
        raise RuntimeError(found["error"])
    return found


def _cold(task_dict: dict) -> dict:
    import subprocess

    done = subprocess.run([sys.executable, __file__, "--one", json.dumps(task_dict)], capture_output=True, text=True,
                          env={**os.environ, "VIGIL_BENCH_CHILD": "1"})  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"the cold shard process failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _shards(shard_seconds: float, sample_fps: float, out: str, conn_id: str) -> list[dict]:
    from vigil.config import ProcessParams, RunRequest
    from vigil.orchestration import planning
    from vigil.store.storage import storage_for

    source = f"{out.rsplit('/', 1)[0]}/src/{FOOTAGE.name}"
    store = storage_for(source, conn_id)
    store.write_bytes(source, FOOTAGE.read_bytes())
    request = RunRequest(sources=(source,), out=out, params=ProcessParams(sample_fps=sample_fps, shard_seconds=shard_seconds),
                         source_conn_id=conn_id, out_conn_id=conn_id)  # fmt: skip
    (info,) = planning.discover(request)
    return [t.to_dict() for t in planning.plan(info, request)]


def _endpoint() -> str:
    from moto.server import ThreadedMotoServer

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import S3_CONN_ID, _free_port

    port = _free_port()
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    os.environ[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"] = json.dumps({
        "conn_type": "aws", "login": "bench", "password": "bench",
        "extra": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"}})  # fmt: skip
    import boto3

    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", aws_access_key_id="bench",
                 aws_secret_access_key="bench").create_bucket(Bucket="bench")  # fmt: skip
    return S3_CONN_ID


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--turns", type=int, default=3, help="cold/warm pairs, alternating")
    parser.add_argument("--shard-seconds", type=float, default=20)
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_shard(json.loads(args.one), warm=False)))
        return
    conn_id = _endpoint()
    shards = _shards(args.shard_seconds, args.sample_fps, "s3://bench/out", conn_id)
    from vigil.orchestration.worker import warm, warm_frame_sizes

    turns: dict[str, list[dict]] = {"cold": [], "warm": []}
    warmed = None
    for turn in range(args.turns):
        for mode in ("cold", "warm"):
            shard = dict(shards[(2 * turn + (mode == "warm")) % len(shards)])  # a shard not yet published
            if mode == "warm" and warmed is None:
                warmed = warm(warm_frame_sizes())
            turns[mode].append(_cold(shard) if mode == "cold" else _child(shard, warm=True))
            print(mode, {k: round(v, 3) for k, v in turns[mode][-1]["spent"].items()}, file=sys.stderr)
    report = _report(turns, args)
    report["warm_up_s"] = warmed
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    os._exit(0)  # moto's server thread


def _report(turns: dict[str, list[dict]], args) -> dict:
    report = {"shard_seconds": args.shard_seconds, "sample_fps": args.sample_fps, "turns": args.turns,
              "loadavg": open("/proc/loadavg").read().split()[:3], "cpu": _cpu()}  # fmt: skip
    # The first inference of a shape or batch size compiles it: what a call costs beyond the same
    # frames in a compiled model is model time, not frame time.
    per_image = statistics.median(t / n for r in turns["warm"] for n, t in r["detect_calls"][1:] if n)
    for runs in turns.values():
        for r in runs:
            if r["detect_calls"]:
                n, took = r["detect_calls"][0]
                extra = max(0.0, took - n * per_image)
                r["spent"]["model"] += extra
                r["spent"]["frames"] -= extra
    frames_per_second = None
    for mode, runs in turns.items():
        median = {s: round(statistics.median(r["spent"][s] for r in runs), 3) for s in STAGES}
        overhead = round(sum(v for s, v in median.items() if s != "frames"), 3)
        report[mode] = {"median_s": median, "overhead_s": overhead}
        if mode == "warm":
            frames_per_second = median["frames"] / args.shard_seconds
    for mode in turns:
        # overhead / (overhead + frames) < 10 %  <=>  shard length > 9 × overhead / frames cost per second
        report[mode]["shortest_shard_s_for_10pct"] = round(9 * report[mode]["overhead_s"] / frames_per_second, 1)
    return report


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    main()
