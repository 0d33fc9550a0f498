"""Airflow task definitions shared by vigil's DAGs: wiring only, every body calls ``orchestration.planning`` or ``pipeline``.

Imported by the DAG files, so this module imports nothing heavy at module level (the
dag-processor and every worker parse DAG files constantly): only ``airflow.sdk``, the standard
library, ``vigil.config`` (itself standard library only) and the run form (``trigger``). XCom
carries small descriptors: the contracts' ``to_dict()`` (a shard task, a shard result), URIs, counts.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

from airflow.sdk import Asset, task

from vigil.orchestration.trigger import run_request_from

DETECTIONS_ASSET = Asset(name="vigil_detections", uri="vigil://detections")
GPU_QUEUE = os.environ.get("VIGIL_GPU_QUEUE", "gpu")  # Celery queue served by GPU workers
GPU_POOL = os.environ.get("VIGIL_GPU_POOL", "gpu_shards")  # caps GPU shards running at once
FAILED_KEY = "failed"
RECORDINGS_KEY = "recordings"
LEFT_KEY = "left_for_later"
UNREAD_KEY = "left_unread"
SUMMARY_KEY = "summary"
log = logging.getLogger(__name__)
# A hung plan or finalize (a stalled mount, a store that never answers) must fail, not hold its run
# open: the nightly DAG runs one at a time, so one hang would block every later night.
PLAN_TIMEOUT = timedelta(minutes=float(os.environ.get("VIGIL_PLAN_TIMEOUT_MINUTES", "120")))
FINALIZE_TIMEOUT = timedelta(minutes=float(os.environ.get("VIGIL_FINALIZE_TIMEOUT_MINUTES", "60")))
NIGHTLY_RUN_TIMEOUT = timedelta(hours=20)  # a night's run ends before the next one is due

def _fail_fast(exc: Exception):
    """Non-retryable vigil errors fail the task at once instead of burning its retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from vigil.errors import VigilError

    if isinstance(exc, VigilError) and not exc.retryable:
        raise AirflowFailException(str(exc)) from exc
    raise exc


def _map_limit() -> int:
    """Airflow's ``[core] max_map_length``: the most instances one mapped task may have."""
    from airflow.configuration import conf

    return conf.getint("core", "max_map_length")


@task(execution_timeout=PLAN_TIMEOUT)
def discover(unprocessed_only: bool = False, params: dict | None = None, dag=None, dag_run=None, ti=None) -> list[list[dict]]:
    """Validate the trigger, list the drop's recordings, and cut them into batches for ``plan``
    (one recording per batch while they fit in ``max_map_length``). The recordings themselves
    go to XCom ``recordings`` for the drop summary (those the nightly cap leaves unread, to
    ``left_unread``)."""
    from dataclasses import asdict

    from vigil.orchestration import drop, planning

    try:
        request = run_request_from(params, dag_run.conf if dag_run else None, set(dag.params))
        recordings, unread = planning.discover(request), []
        if unprocessed_only:  # the nightly run: only what the cap's hours can take is planned
            recordings, unread = planning.tonight(request, planning.unprocessed(request, recordings))
    except Exception as exc:
        _fail_fast(exc)
    found = [asdict(info) for info in recordings]
    ti.xcom_push(key=RECORDINGS_KEY, value=found)
    ti.xcom_push(key=UNREAD_KEY, value=unread)
    return drop.even_batches(found, _map_limit())


@task(execution_timeout=PLAN_TIMEOUT, retries=1, retry_delay=timedelta(seconds=10), map_index_template="{{ plan_label }}")
def plan(recordings: list[dict], params: dict | None = None, dag=None, dag_run=None) -> dict:
    """Fingerprint and probe the recordings of one batch (mapped: batches plan in parallel, each
    recording read once), and describe every shard. A recording that cannot be read is reported
    under ``failed``, not allowed to stop the others."""
    from airflow.sdk import get_current_context

    from vigil.errors import InputError
    from vigil.orchestration import planning
    from vigil.store.storage import ObjectInfo

    get_current_context()["plan_label"] = recordings[0]["uri"].rsplit("/", 1)[-1] + (
        f" +{len(recordings) - 1}" if len(recordings) > 1 else "")  # fmt: skip
    try:
        request = run_request_from(params, dag_run.conf if dag_run else None, set(dag.params))
    except Exception as exc:
        _fail_fast(exc)
    shards, failed = [], []
    for info in recordings:
        try:
            shards.extend(shard.to_dict() for shard in planning.plan(ObjectInfo(**info), request))
        except InputError as exc:
            failed.append({"uri": info["uri"], "error": str(exc)})
    return {"shards": shards, "failed": failed}


@task(trigger_rule="all_done", execution_timeout=PLAN_TIMEOUT)
def batch_shards(planned, unprocessed_only: bool = False, ti=None) -> dict:
    """Every plan's shards, in batches of at most ``max_map_length`` per device for ``detect``;
    recordings that could not be planned (or that the nightly cap leaves for later) go to XCom
    for ``finalize`` to report."""
    from vigil.orchestration import drop

    recordings = ti.xcom_pull(task_ids="discover", key=RECORDINGS_KEY)
    if recordings is None:  # refused or broken before anything was listed: nothing to analyse
        ti.xcom_push(key=FAILED_KEY, value=[{"uri": "(discover)", "error": "the run was refused or could not "
                                             "list its recordings; see the discover task's log"}])  # fmt: skip
        return {"cpu": [], "cuda": []}
    cap = drop.NightlyCap.from_environment() if unprocessed_only else None  # the nightly run: the cap's hours
    batches, failed, left = drop.gather([p for p in (planned or []) if p], recordings, cap, _map_limit())
    ti.xcom_push(key=FAILED_KEY, value=failed)
    ti.xcom_push(key=LEFT_KEY, value=[*(ti.xcom_pull(task_ids="discover", key=UNREAD_KEY) or []), *left])
    return batches


@task(
    retries=2,
    retry_delay=timedelta(seconds=10),
    map_index_template="{{ shard_label }}",
    execution_timeout=timedelta(hours=2),
)
def detect(shards: list[dict], dag_run=None, ti=None) -> list[dict]:
    """A batch of shards (one shard while the drop fits in ``max_map_length``): decode each one's
    sampled frames, detect people and poses, publish its Parquet files. A failing shard does not
    stop the batch's others; the task then fails (and retries: shards already published are
    found, not analysed again)."""
    from airflow.sdk import get_current_context

    entered, began = _process_age(), time.perf_counter()  # task start: fork, SDK set-up, DAG parse
    from vigil.orchestration import pipeline
    from vigil.store.contracts import ShardTask

    log.info("vigil-overhead task_start_s=%.3f imports_s=%.3f", entered, time.perf_counter() - began)
    tasks = [ShardTask.from_dict(shard) for shard in shards]
    get_current_context()["shard_label"] = tasks[0].label + (f" +{len(tasks) - 1}" if len(tasks) > 1 else "")
    run_context = {
        "dag_id": dag_run.dag_id if dag_run else None,
        "run_id": dag_run.run_id if dag_run else None,
        "task_id": ti.task_id if ti else None,
        "map_index": ti.map_index if ti else None,
        "try_number": ti.try_number if ti else None,
    }
    results, errors = [], []
    for shard_task in tasks:
        try:
            began = time.perf_counter()
            results.append(pipeline.detect_shard(shard_task, run_context).to_dict())
            log.info("vigil-overhead shard_s=%.3f", time.perf_counter() - began)
        except Exception as exc:
            log.error("shard %s failed: %s", shard_task.label, exc)
            errors.append(exc)
    if errors:
        # Retry unless every failure says a retry cannot help.
        from vigil.errors import VigilError

        final = [e for e in errors if isinstance(e, VigilError) and not e.retryable]
        _fail_fast(final[0] if len(final) == len(errors) else next(e for e in errors if e not in final))
    return results


def _process_age() -> float:
    """Seconds since this process was forked (Linux /proc: uptime less the process's start tick)."""
    try:
        started = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        return float(open("/proc/uptime").read().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return 0.0


@task
def shards_for(batches: dict, device: str) -> list[list[dict]]:
    """The shard batches to run on ``device`` ("cpu" or "cuda"): GPU shards go to the GPU queue."""
    return batches[device]


@task(trigger_rule="all_done", outlets=[DETECTIONS_ASSET], execution_timeout=FINALIZE_TIMEOUT)
def finalize(cpu_results, gpu_results, outlet_events=None, ti=None) -> dict:
    """Write each complete recording's manifest, then the drop summary (every recording: finalized
    with its manifest, failed and why, or left for a later night); fail naming any recording that
    did not complete."""
    from vigil.errors import RecordingsFailed
    from vigil.orchestration import drop
    from vigil.orchestration import finalize as finalizing
    from vigil.store.contracts import ShardResult

    batches = [*(cpu_results or []), *(gpu_results or [])]
    results = [ShardResult.from_dict(r) for batch in batches if batch for r in batch if r]
    failed = ti.xcom_pull(task_ids="batch_shards", key=FAILED_KEY)
    if failed is None:
        failed = [{"uri": "(plan)", "error": "planning did not finish; see the plan tasks' logs"}]
    recordings = [r["uri"] for r in ti.xcom_pull(task_ids="discover", key=RECORDINGS_KEY) or []]
    left = ti.xcom_pull(task_ids="batch_shards", key=LEFT_KEY) or []
    try:
        summaries, error = finalizing.finalize(results, failed), None
    except RecordingsFailed as exc:
        summaries, error = exc.summaries, exc
    finalized = {s["source_uri"] for s in summaries}
    planned = {r.plan.source.uri for r in results}
    problems = [*failed, *({"uri": uri, "error": "some of its shards did not finish (see the detect tasks' logs); "
                                                  "no manifest written"}
                           for uri in sorted(planned - finalized))]  # fmt: skip
    summary = drop.drop_summary(recordings, summaries, problems, left)
    drop.log_summary(summary)
    ti.xcom_push(key=SUMMARY_KEY, value=summary)
    _announce(outlet_events, summaries)
    if error is not None:
        _fail_fast(error)
    return summary


def _announce(outlet_events, summaries: list[dict]) -> None:
    if outlet_events is not None and summaries:
        outlet_events[DETECTIONS_ASSET].extra = {
            "recordings": [s["recording_id"] for s in summaries],
            "manifests": [s["manifest_uri"] for s in summaries],
            # the ledger's head after this run: an independent copy for `vigil verify --head`
            "ledger_head": max((s["ledger_head"] for s in summaries), key=lambda h: int(h.split(":")[0])),
        }


def process_graph(unprocessed_only: bool = False) -> None:
    """discover -> plan (mapped over recording batches) -> batch_shards -> detect (mapped over
    shard batches, CPU or GPU queue) -> finalize, in the current DAG. No step maps more than
    ``max_map_length`` instances, so any drop runs from one trigger."""
    planned = plan.expand(recordings=discover(unprocessed_only=unprocessed_only))
    batches = batch_shards(planned, unprocessed_only=unprocessed_only)
    cpu = detect.expand(shards=shards_for.override(task_id="cpu_shards")(batches, "cpu"))
    gpu = detect.override(task_id="detect_gpu", queue=GPU_QUEUE, pool=GPU_POOL).expand(
        shards=shards_for.override(task_id="gpu_shards")(batches, "cuda")
    )
    finalize(cpu, gpu)
