"""Airflow task definitions shared by vigil's DAGs: wiring only, every body calls ``vigil.pipeline``.

Imported by the DAG files, so this module imports nothing heavy at module level (the
dag-processor and every worker parse DAG files constantly): only ``airflow.sdk``, the standard
library and ``vigil.config`` (itself standard library only). XCom carries small descriptors: the
contracts' ``to_dict()`` (a shard task, a shard result), URIs, counts.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Asset, Param, task

from vigil.config import ProcessParams, declarations

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


_JSON_TYPES = {float: "number", int: "integer", str: "string", bool: "boolean"}


def processing_form(cls=ProcessParams) -> dict[str, Param]:
    """One typed, bounded ``Param`` per declared processing parameter, from its declaration."""
    form = {}
    for d in declarations(cls):
        meta, kind = d.meta, _JSON_TYPES[d.kind]
        schema = {"type": ["null", kind] if d.optional else kind, "title": meta["title"], "description": meta["help"]}
        bounds = {"minimum": None if meta["exclusive_minimum"] else meta["minimum"], "maximum": meta["maximum"],
                  "exclusiveMinimum": meta["minimum"] if meta["exclusive_minimum"] else None,
                  "multipleOf": meta["multiple_of"], "pattern": meta["pattern"],
                  "enum": list(meta["choices"]) if meta["choices"] else None}  # fmt: skip
        form[d.name] = Param(d.default, **schema, **{k: v for k, v in bounds.items() if v is not None})
    return form


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
        **processing_form(),
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
        "clips": Param(False, type="boolean", title="Cut a lossless clip for every presence interval and posture event"),
        "conn_id": Param(
            os.environ.get("VIGIL_S3_CONN_ID") or None,
            type=["null", "string"],
            title="Airflow connection for s3:// (empty: the AWS environment)",
        ),
    }


def run_request_from(params: dict, conf: dict | None, declared: set[str]):
    """Validate a run's parameters into a RunRequest; refuse unknown keys (a typo would silently
    fall back to a default and change the evidence)."""
    from vigil.config import RunRequest
    from vigil.errors import ParameterError

    unknown = sorted(set(conf or {}) - declared)
    if unknown:
        raise ParameterError(f"unknown trigger parameters {unknown}; the known ones are {sorted(declared)}")
    request = RunRequest(
        sources=tuple(params["sources"]),
        out=params["out"],
        params=ProcessParams.from_dict({d.name: params[d.name] for d in declarations(ProcessParams) if d.name in params}),
        source_conn_id=params.get("conn_id"),
        out_conn_id=params.get("conn_id"),
        recording_start=params.get("recording_start"),
        expected_sha256=dict(params.get("expected_sha256") or {}),
        force=bool(params.get("force")),
        blur_faces=bool(params.get("blur_faces")),
        clips=bool(params.get("clips")),
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
    return [shard.to_dict() for shard in planned["shards"]]


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
    from vigil.store.contracts import ShardTask

    shard_task = ShardTask.from_dict(shard)
    get_current_context()["shard_label"] = shard_task.label
    run_context = {
        "dag_id": dag_run.dag_id if dag_run else None,
        "run_id": dag_run.run_id if dag_run else None,
        "task_id": ti.task_id if ti else None,
        "map_index": ti.map_index if ti else None,
        "try_number": ti.try_number if ti else None,
    }
    try:
        return pipeline.detect_shard(shard_task, run_context).to_dict()
    except Exception as exc:
        _fail_fast(exc)


@task
def shards_for(shards: list[dict], device: str) -> list[dict]:
    """The shards to run on ``device`` ("cpu" or "cuda"): GPU shards go to the GPU queue."""
    from vigil.store.contracts import ShardTask

    return [s for s in shards if ShardTask.from_dict(s).plan.params.device.split(":")[0] == device]


@task(trigger_rule="all_done", outlets=[DETECTIONS_ASSET], execution_timeout=FINALIZE_TIMEOUT)
def finalize(cpu_results, gpu_results, outlet_events=None, ti=None) -> list[dict]:
    """Write each complete recording's manifest; fail naming any recording that did not complete."""
    from vigil.errors import RecordingsFailed
    from vigil.orchestration import finalize as finalizing
    from vigil.store.contracts import ShardResult

    results = [ShardResult.from_dict(r) for r in (*(cpu_results or []), *(gpu_results or [])) if r]
    failed = ti.xcom_pull(task_ids="plan", key=FAILED_KEY)
    if failed is None:
        failed = [{"uri": "(plan)", "error": "planning did not finish; see the plan task's log"}]
    try:
        summaries = finalizing.finalize(results, failed)
    except RecordingsFailed as exc:
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
            # the ledger's head after this run: an independent copy for `vigil verify --head`
            "ledger_head": max((s["ledger_head"] for s in summaries), key=lambda h: int(h.split(":")[0])),
        }


def process_graph(unprocessed_only: bool = False) -> None:
    """plan -> detect (one mapped task per shard, CPU or GPU queue) -> finalize, in the current DAG."""
    shards = plan(unprocessed_only=unprocessed_only)
    cpu = detect.expand(shard=shards_for.override(task_id="cpu_shards")(shards, "cpu"))
    gpu = detect.override(task_id="detect_gpu", queue=GPU_QUEUE, pool=GPU_POOL).expand(
        shard=shards_for.override(task_id="gpu_shards")(shards, "cuda")
    )
    finalize(cpu, gpu)
