"""Warm Celery workers: heavy modules and the compiled default model, loaded once per worker.

Airflow 3's Celery worker runs each task in a fresh child that the task SDK's supervisor forks
from the Celery pool process (``airflow.sdk.execution_time.supervisor``: ``os.fork()`` on Linux;
fork+exec only on macOS). Whatever the worker's main process holds before Celery forks its pool
is therefore in every task for free, copy-on-write: imports (torch, ultralytics, openvino), the
hash-checked weights, the exported models, and OpenVINO's compiled blob in its cache (the
compiled model itself cannot cross a fork: each task compiles it from the blob, 0.16 s).
Without this each shard task paid those again (README "Scale": seconds per shard).

Enable it on workers with::

    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=vigil.orchestration.worker.CELERY_CONFIG

The scheduler imports this module too (it builds the same Celery app); it only connects a signal
there, which fires in workers alone. A warm-up that fails is logged and the worker starts cold:
every task still loads what it needs itself, so results never depend on the warm-up.

``VIGIL_WARM_FRAME_SIZES`` (``WIDTHxHEIGHT,…``; default ``1920x1080``, which also covers 1280x720
and every other 16:9 recording) names the frame sizes to compile for; empty warms imports only.
Only the default model set-up is warmed: a run with other weights, ``imgsz`` or runtime loads
its own model inside its task, as before.
"""

from __future__ import annotations

import logging
import os
import time

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

CELERY_CONFIG = dict(DEFAULT_CELERY_CONFIG)
DEFAULT_WARM_SIZES = "1920x1080"
log = logging.getLogger(__name__)


def warm_frame_sizes() -> list[tuple[int, int]]:
    """``VIGIL_WARM_FRAME_SIZES`` as (width, height) pairs; refused with what to write if malformed."""
    from vigil.errors import ParameterError

    text = os.environ.get("VIGIL_WARM_FRAME_SIZES", DEFAULT_WARM_SIZES).strip()
    sizes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        width, _, height = item.lower().partition("x")
        if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
            raise ParameterError(f"VIGIL_WARM_FRAME_SIZES: {item!r} is not WIDTHxHEIGHT; write e.g. 1920x1080,1280x960")
        sizes.append((int(width), int(height)))
    return sizes


def warm(sizes: list[tuple[int, int]]) -> dict[str, float]:
    """Import what a shard task needs and compile the default model for ``sizes``; seconds per step."""
    import numpy as np

    took, began = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal began
        took[name] = round(time.perf_counter() - began, 3)
        began = time.perf_counter()

    import av  # noqa: F401
    import boto3  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook  # noqa: F401  (s3:// connections)

    from vigil.config import DEFAULT_MODEL, ProcessParams
    from vigil.model.detector import load_detector
    from vigil.model.preload import import_runtimes
    from vigil.orchestration import airflow_tasks, pipeline, planning  # noqa: F401  (the DAG's and tasks' own)
    from vigil.store.weights import resolve_model

    params = ProcessParams()
    import_runtimes(params)
    lap("imports")
    detector = load_detector(params, resolve_model(DEFAULT_MODEL, None))
    for width, height in sizes:
        # The first inference of a shape compiles it; the second warms a whole batch.
        frames = [np.zeros((height, width, 3), np.uint8)]
        detector.detect(frames)
        detector.detect(frames * params.batch_size)
    detector.before_fork()  # OpenVINO's threads do not cross Celery's fork: tasks compile from the cache
    lap("model")
    return took


@worker_init.connect
def _warm_worker(**_) -> None:
    """In the worker's main process, before Celery forks its pool (so every task inherits it)."""
    try:
        took = warm(warm_frame_sizes())
    except Exception as exc:  # a cold worker is slower, never wrong: each task loads for itself
        log.warning("vigil: worker warm-up failed, tasks will load their own model: %s", exc)
        return
    log.warning("vigil: worker warm (seconds: %s)", took)
