"""Per-stage time of one vigil run, from py-spy samples (``bench/run.py --profile``).

A sampling profiler leaves the hot path as it is. py-spy records every thread's Python stack
about ``RATE`` times a second (idle threads, e.g. one waiting on a queue, are not sampled);
each stack is put in one stage by the rules below and the table gives each stage's share of
the sampled busy time. Threads overlap, so the seconds add up to CPU-busy time, not wall time.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

RATE = 50  # samples per second: enough for stages of a multi-minute run, little overhead on 2 cores

# A stack inside finalize is finalize whatever it calls. Otherwise the innermost frame that
# matches a rule names the stage (so a colour conversion inside the decoder counts as convert).
FINALIZE = re.compile(r"vigil/orchestration/finalize\.py")
STAGES = (
    ("convert/letterbox", re.compile(r"\bto_ndarray\b|\breformat\b|\bpre_transform\b|\bpreprocess\b|augment\.py"
                                     r"|\bletterbox \(")),
    # The direct OpenVINO path (vigil/model/openvino_pose.py) waits for and starts infer requests
    # in native code: its own frames are the innermost Python ones then.
    ("inference", re.compile(r"\binference\b \(|autobackend\.py|openvino/|onnxruntime/|torch/nn/"
                             r"|\b_collect \(.*openvino_pose|\b_detect \(.*openvino_pose")),
    ("post-process", re.compile(r"\bpostprocess\b|non_max_suppression|\bnms \(|vigil/model/detections\.py"
                                r"|ultralytics/engine/results\.py")),
    ("write", re.compile(r"vigil/store/sink\.py|pyarrow/")),
    ("track", re.compile(r"vigil/model/tracker\.py|ultralytics/trackers/")),
    ("plan/probe", re.compile(r"\bplan_all\b|\bdiscover\b|vigil/media/probe\.py")),
    ("decode", re.compile(r"vigil/media/")),
    ("thread hand-off", re.compile(r"Condition\.wait|queue\.py|concurrent/futures/thread\.py")),
    ("start-up/imports", re.compile(r"<frozen importlib|^thread \(\d+\): MainThread$|dataclasses\.py|ctypes/")),
)
ORDER = ("decode", "convert/letterbox", "inference", "post-process", "track", "write", "finalize", "plan/probe",
         "thread hand-off", "start-up/imports", "other")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(__import__("sys").executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("--profile needs py-spy: pip install -e '.[dev]' (it is pinned in the dev extra)")
    return found


def record_command(output: Path, command: list[str]) -> list[str]:
    """``command`` run under py-spy, writing collapsed stacks (one ``frame;frame;… count`` a line)."""
    return [py_spy(), "record", "--rate", str(RATE), "--format", "raw", "--threads", "--output", str(output), "--", *command]


def stage_of(stack: str) -> str:
    if FINALIZE.search(stack):
        return "finalize"
    for frame in reversed(stack.split(";")):
        for stage, rule in STAGES:
            if rule.search(frame):
                return stage
    return "other"


def stage_samples(collapsed: Path) -> Counter:
    samples: Counter = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[stage_of(stack)] += int(count)
    return samples


def table(samples: Counter, wall_seconds: float) -> str:
    total = sum(samples.values()) or 1
    rows = ["| stage | samples | share of busy samples | busy seconds |", "|---|---|---|---|"]
    for stage in ORDER:
        rows.append(f"| {stage} | {samples[stage]} | {100 * samples[stage] / total:.1f} % | {samples[stage] / RATE:.1f} |")
    rows.append(f"| **all** | {total} | 100 % | {total / RATE:.1f} (wall {wall_seconds:.1f}) |")
    return "\n".join(rows)
