"""INT8 vs BF16 vs FP32: agreement with FP32 PyTorch and pure-inference ms/frame (384x640, batch 8).

    PYTHONPATH=tasks .venv/bin/python bench/int8_speed.py [--agree]

The three OpenVINO models are called in turn on one batch of 8 real letterboxed frames of the
sample footage, 20 rounds, so a busy shared machine slows them alike; min and median are printed.
``--agree`` first compares INT8 with FP32 PyTorch on 96 held-out frames (not used for calibration).
"""

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tasks"), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import openvino  # noqa: E402
from test_int8 import _matched, held_out_frames  # noqa: E402

from vigil.config import ProcessParams  # noqa: E402
from vigil.model.detector import default_model_file, export, load_detector  # noqa: E402
from vigil.model.openvino_pose import letterbox  # noqa: E402
from vigil.model.quantize import int8_export  # noqa: E402

SHAPE = (384, 640)
frames = held_out_frames(96 if "--agree" in sys.argv else 8)
int8 = load_detector(ProcessParams(runtime="openvino-int8"))
if "--agree" in sys.argv:
    fp32 = load_detector(ProcessParams(runtime="torch"))
    ref, got = [], []
    for s in range(0, len(frames), 8):
        ref += fp32.detect(frames[s : s + 8])
        got += int8.detect(frames[s : s + 8])
    p, q = sum(len(d) for d in ref), sum(len(d) for d in got)
    print(f"persons: FP32 {p}, INT8 {q}; FP32 found by INT8 at IoU>=0.9: "
          f"{sum(_matched(r.xyxy, f.xyxy) for r, f in zip(ref, got))}, INT8 that are FP32's: "
          f"{sum(_matched(f.xyxy, r.xyxy) for r, f in zip(ref, got))}")  # fmt: skip
# The IRs' own input: RGB, NCHW, float in [0, 1] (the direct path compiles this conversion in).
batch = np.stack([letterbox(f, SHAPE)[..., ::-1].transpose(2, 0, 1) for f in frames[:8]]).astype(np.float32) / 255
weights = default_model_file()
fp = export(weights, SHAPE, "openvino")
core = openvino.Core()
models = {}
for name, folder, hint in (("int8", int8_export(fp, weights.sha256, SHAPE), None), ("bf16", fp, "bf16"), ("fp32", fp, "f32")):
    models[name] = core.compile_model(core.read_model(next(folder.glob("*.xml"))), "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})
    for _ in range(3):
        models[name](batch)
times = {name: [] for name in models}
for _ in range(20):
    for name, model in models.items():
        began = time.perf_counter()
        model(batch)
        times[name].append(time.perf_counter() - began)
for name, t in times.items():
    print(f"{name}: min {min(t) * 1000 / 8:.1f}, median {statistics.median(t) * 1000 / 8:.1f} ms/frame")
