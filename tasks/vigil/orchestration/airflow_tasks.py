"""Airflow task definitions shared by vigil's DAGs: wiring only, every body calls ``vigil.pipeline``.

Imported by the DAG files, so this module imports nothing heavy at module level (the
dag-processor and every worker parse DAG files constantly): only ``airflow.sdk`` and the
standard library. XCom carries small descriptors (a shard as a dict, URIs, counts).
"""

from __future__ import annotations

import os
from datetime import timedelta

from fractions import Fraction

from airflow.sdk import Asset, Param, task

DETECTIONS_ASSET = Asset(name="vigil_detections", uri="vigil://detections")
GPU_QUEUE = os.environ.get("VIGIL_GPU_QUEUE", "gpu")  # Celery queue served by GPU workers
GPU_POOL = os.environ.get("VIGIL_GPU_POOL", "gpu_shards")  # caps GPU shards running at once
FAILED_KEY = "failed"
# A hung plan or finalize (a stalled mount, a store that never answers) must fail, not hold its run
# open: the nightly DAG runs one at a time, so one hang would block every later night.
PLAN_TIMEOUT = timedelta(minutes=float(os.environ.get("VIGIL_PLAN_TIMEOUT_MINUTES", "120")))
FINALIZE_TIMEOUT = timedelta(minutes=float(os.environ.get("VIGIL_FINALIZE_TIMEOUT_MINUTES", "60")))
NIGHTLY_RUN_TIMEOUT = timedelta(hours=20)  # a night's run ends before the next one is due

_URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.\-]{1,62}(/.*)?|file:///.*)$"


def process_params(sources: list[str] | None = None, out: str | None = None) -> dict:
    """The trigger form of a processing run: typed, bounded, validated by JSON schema."""
    return {
        "sources": Param(
            sources or [],
            type="array",
            minItems=1,
            items={"type": "string", "pattern": _URI_PATTERN},
            title="Recordings",
            description="Recording URIs or prefixes holding recordings: s3://bucket/drop-2024-03/ or file:///data/drop/",
        ),
        "out": Param(
            out if out is not None else os.environ.get("VIGIL_OUTPUT_URI", ""),
            type="string",
            pattern=_URI_PATTERN,
            title="Output location",
            description="Where Parquet and manifests go; never inside a source prefix",
        ),
        "sample_fps": Param(2.0, type="number", exclusiveMinimum=0, maximum=60, title="Sampled frames per second"),
        "shard_seconds": Param(600, type="integer", minimum=1, maximum=86400, title="Shard length (seconds)"),
        "model": Param("yolo11n-pose.pt", type="string", minLength=1, title="Model weights (default, path or URI)"),
        "model_sha256": Param(None, type=["null", "string"], pattern="^[0-9a-fA-F]{64}$", title="SHA-256 of the weights"),
        "static_gate": Param(None, type=["null", "number"], exclusiveMinimum=0, maximum=50,
                             title="Static-scene gating (% of pixels changed; empty: off)",
                             description="Frames unchanged since the last analysed one are not analysed; marked 'static'"),
        "batch_size": Param(8, type="integer", minimum=1, maximum=256, title="Frames per model batch"),
        "device": Param("cpu", type="string", pattern="^(cpu|cuda(:[0-9]+)?)$", title="Inference device",
                        description="cuda sends the shards to the GPU queue"),
        "runtime": Param("auto", type="string", enum=["auto", "onnx", "openvino", "torch"], title="Inference runtime",
                         description="auto: PyTorch FP16 on CUDA; OpenVINO BF16 on CPUs with native BF16, else ONNX Runtime"),
        "decoder": Param("auto", type="string", enum=["auto", "cpu", "nvdec"], title="Video decoder",
                         description="auto: with a CUDA device, NVDEC and the host cores decode alternate shards; else the CPU"),
        "recording_start": Param(
            None, type=["null", "string"], format="date-time", title="Wall-clock time of the first frame (UTC offset required)"
        ),
        "expected_sha256": Param(
            {},
            type="object",
            additionalProperties={"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            title="Expected SHA-256 per recording URI",
            description="A recording whose hash differs is not analysed (a <name>.sha256 sidecar is also honoured)",
        ),
        "force": Param(False, type="boolean", title="Re-analyse shards whose output already exists"),
        "blur_faces": Param(False, type="boolean", title="Blur faces in the review pictures (never in the data)"),
        "conn_id": Param(
            os.environ.get("VIGIL_S3_CONN_ID") or None,
            type=["null", "string"],
            title="Airflow connection for s3:// (empty: the AWS environment)",
        ),
    }


def run_request_from(params: dict, conf: dict | None, declared: set[str]):
    """Validate a run's parameters into a RunRequest; refuse unknown keys (a typo would silently
    fall back to a default and change the evidence)."""
    from vigil.config import ProcessParams, RunRequest
    from vigil.errors import ParameterError

    unknown = sorted(set(conf or {}) - declared)
    if unknown:
        raise ParameterError(f"unknown trigger parameters {unknown}; the known ones are {sorted(declared)}")
    request = RunRequest(
        sources=tuple(params["sources"]),
        out=params["out"],
        params=ProcessParams(
            sample_fps=float(params["sample_fps"]),
            shard_seconds=params["shard_seconds"],
            model=params["model"],
            model_sha256=params["model_sha256"],
            batch_size=int(params["batch_size"]),
            device=params["device"],
            runtime=params.get("runtime", "auto"),
            decoder=params.get("decoder", "auto"),
            static_gate=params.get("static_gate"),
        ),
        source_conn_id=params.get("conn_id"),
        out_conn_id=params.get("conn_id"),
        recording_start=params.get("recording_start"),
        expected_sha256=dict(params.get("expected_sha256") or {}),
        force=bool(params.get("force")),
        blur_faces=bool(params.get("blur_faces")),
    )
    from vigil.operator import operator_policy

    operator_policy().check_trigger(request)  # connection and weights: the operator's choice, not the form's
    return request


def _fail_fast(exc: Exception):
    """Non-retryable vigil errors fail the task at once instead of burning its retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from vigil.errors import VigilError

    if isinstance(exc, VigilError) and not exc.retryable:
        raise AirflowFailException(str(exc)) from exc
    raise exc


@task(execution_timeout=PLAN_TIMEOUT)
def plan(unprocessed_only: bool = False, params: dict | None = None, dag=None, dag_run=None, ti=None) -> list[dict]:
    """Discover the recordings, fingerprint and probe each, and describe every shard.

    Returns the shards (mapped over by ``detect``); recordings that could not be planned are
    pushed as XCom ``failed`` for ``finalize`` to report.
    """
    from airflow.configuration import conf

    from vigil.orchestration import pipeline

    try:
        request = run_request_from(params, dag_run.conf if dag_run else None, set(dag.params))
        recordings = pipeline.discover(request)
        if unprocessed_only:
            recordings = pipeline.unprocessed(request, recordings)
        planned = pipeline.plan_all(request, recordings, conf.getint("core", "max_map_length"))
    except Exception as exc:
        _fail_fast(exc)
    ti.xcom_push(key=FAILED_KEY, value=planned["failed"])
    return planned["shards"]


@task(
    retries=2,
    retry_delay=timedelta(seconds=10),
    map_index_template="{{ shard_label }}",
    execution_timeout=timedelta(hours=2),
)
def detect(shard: dict, dag_run=None, ti=None) -> dict:
    """One shard: decode its sampled frames, detect people and poses, publish its Parquet files."""
    from airflow.sdk import get_current_context

    from vigil.orchestration import pipeline

    get_current_context()["shard_label"] = (
        f"{shard['recording_id']} #{shard['shard']['index']} "
        f"[{float(Fraction(shard['shard']['start'])):.0f}s, {float(Fraction(shard['shard']['end'])):.0f}s)"
    )
    run_context = {
        "dag_id": dag_run.dag_id if dag_run else None,
        "run_id": dag_run.run_id if dag_run else None,
        "task_id": ti.task_id if ti else None,
        "map_index": ti.map_index if ti else None,
        "try_number": ti.try_number if ti else None,
    }
    try:
        return pipeline.detect_shard(shard, run_context)
    except Exception as exc:
        _fail_fast(exc)


@task
def shards_for(shards: list[dict], device: str) -> list[dict]:
    """The shards to run on ``device`` ("cpu" or "cuda"): GPU shards go to the GPU queue."""
    return [s for s in shards if s["params"]["device"].split(":")[0] == device]


@task(trigger_rule="all_done", outlets=[DETECTIONS_ASSET], execution_timeout=FINALIZE_TIMEOUT)
def finalize(cpu_results, gpu_results, outlet_events=None, ti=None) -> list[dict]:
    """Write each complete recording's manifest; fail naming any recording that did not complete."""
    from vigil.orchestration import finalize as finalizing

    results = [*(cpu_results or []), *(gpu_results or [])]
    failed = ti.xcom_pull(task_ids="plan", key=FAILED_KEY)
    if failed is None:
        failed = [{"uri": "(plan)", "error": "planning did not finish; see the plan task's log"}]
    try:
        summaries = finalizing.finalize([r for r in results if r], failed)
    except finalizing.RecordingsFailed as exc:
        summaries = exc.summaries
        _announce(outlet_events, summaries)
        _fail_fast(exc)
    _announce(outlet_events, summaries)
    return summaries


def _announce(outlet_events, summaries: list[dict]) -> None:
    if outlet_events is not None and summaries:
        outlet_events[DETECTIONS_ASSET].extra = {
            "recordings": [s["recording_id"] for s in summaries],
            "manifests": [s["manifest_uri"] for s in summaries],
        }


def process_graph(unprocessed_only: bool = False) -> None:
    """plan -> detect (one mapped task per shard, CPU or GPU queue) -> finalize, in the current DAG."""
    shards = plan(unprocessed_only=unprocessed_only)
    cpu = detect.expand(shard=shards_for.override(task_id="cpu_shards")(shards, "cpu"))
    gpu = detect.override(task_id="detect_gpu", queue=GPU_QUEUE, pool=GPU_POOL).expand(
        shard=shards_for.override(task_id="gpu_shards")(shards, "cuda")
    )
    finalize(cpu, gpu)
