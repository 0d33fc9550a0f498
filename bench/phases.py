"""Wall and CPU time of each phase of one recording's run, in one process: plan, every shard,
finalize (``resource.getrusage`` around each; the first shard includes loading the model).

    PYTHONPATH=tasks YOLO_OFFLINE=1 .venv/bin/python bench/phases.py bench/.cache/corridor-x26.mp4 [--runtime auto]

py-spy's stage table (``bench/run.py --profile``) counts a thread waiting for the GIL as busy;
this counts only what ran. Run it twice, or in turns with another commit (a git worktree with
its own ``PYTHONPATH``): a 2-core VM's speed wanders by several per cent.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))

from vigil.config import ProcessParams, RunRequest  # noqa: E402
from vigil.orchestration import pipeline, planning  # noqa: E402
from vigil.orchestration.finalize import finalize  # noqa: E402
from vigil.uri import file_uri  # noqa: E402


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recording", type=Path)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--shard-seconds", type=int, default=600)
    args = parser.parse_args()

    params = ProcessParams(sample_fps=args.sample_fps, shard_seconds=args.shard_seconds, runtime=args.runtime)
    out = file_uri(tempfile.mkdtemp(prefix="vigil-phases-"))
    request = RunRequest(sources=(file_uri(str(args.recording.resolve())),), out=out, params=params)
    mark = [time.perf_counter(), _cpu()]

    def lap(name: str, frames: int | None = None) -> None:
        wall, cpu = time.perf_counter() - mark[0], _cpu() - mark[1]
        rate = f"  {frames} frames, {frames / wall:.1f} frames/s" if frames else ""
        print(f"{name:10s} wall {wall:6.2f} s  CPU {cpu:6.2f} s{rate}", flush=True)
        mark[:] = [time.perf_counter(), _cpu()]

    planned = planning.plan_all(request, planning.discover(request))
    lap("plan")
    results = []
    for task in planned["shards"]:
        results.append(pipeline.detect_shard(task))
        lap(f"shard {task.shard.index}", results[-1].rows("frames"))
    finalize(results, planned["failed"])
    lap("finalize")
    return 0


if __name__ == "__main__":
    sys.exit(main())
