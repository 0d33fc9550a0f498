"""Decode every shard of a recording as a shard does (``media.frames.sampled_frames``, no model)
and hash what comes out: frame indices, times, statuses and pixels. A change to decoding must
leave the hash as it was; the time says what it saved.

    PYTHONPATH=tasks .venv/bin/python bench/decode_only.py RECORDING [--sample-fps 1] [--shard-seconds 600]

Compare with another commit by running it from a git worktree of that commit (its own
``PYTHONPATH``), in turns.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))

from vigil.config import ProcessParams, RunRequest  # noqa: E402
from vigil.media.frames import sampled_frames  # noqa: E402
from vigil.orchestration import planning  # noqa: E402
from vigil.uri import file_uri  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recording", type=Path)
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--shard-seconds", type=int, default=600)
    args = parser.parse_args()

    params = ProcessParams(sample_fps=args.sample_fps, shard_seconds=args.shard_seconds)
    request = RunRequest(sources=(file_uri(str(args.recording.resolve())),),
                         out=file_uri(tempfile.mkdtemp(prefix="vigil-decode-")), params=params)  # fmt: skip
    planned = planning.plan_all(request, planning.discover(request))
    digest, entries = hashlib.sha256(), 0
    began, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    for task in planned["shards"]:
        with open(args.recording, "rb") as handle:
            for frame in sampled_frames(handle, task.plan.source.uri, task.plan.probe, task.shard, params.sample_fps,
                                        list(task.keyframes)):  # fmt: skip
                digest.update(repr((frame.frame_index, frame.pts, frame.status, frame.seconds)).encode())
                if frame.image is not None:
                    digest.update(frame.image.tobytes())
                entries += 1
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    print(f"{entries} entries, wall {time.perf_counter() - began:.2f} s, CPU {cpu:.2f} s (hashing included), "
          f"sha256 {digest.hexdigest()[:16]}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
