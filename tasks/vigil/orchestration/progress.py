"""Progress of ``vigil process``: a live bar on a terminal, plain log lines anywhere else.

Both show recordings and shards done, sampled frames per second and the time left. Time left is
estimated from recording time: shards are weighted by how many seconds of video they cover, so a
short last shard does not skew it. It goes to stderr, keeping stdout for the JSON summary.
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from typing import Any, TextIO


class ShardProgress:
    """Count finished shards: ``with ShardProgress(shards) as p: p.done(task, detect_shard(task))``.

    ``interactive`` forces one mode (a live bar when true); by default it is whether ``stream``
    is a terminal.
    """

    def __init__(self, shards: list, stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = _isatty(self.stream) if interactive is None else interactive
        self.shards_total = len(shards)
        self.seconds_total = sum(_seconds(s) for s in shards)
        self.left_by_recording: dict[str, int] = {}
        for shard in shards:
            recording = _get(shard, "recording_id")
            self.left_by_recording[recording] = self.left_by_recording.get(recording, 0) + 1
        self.shards_done = 0
        self.seconds_done = 0.0
        self.frames = 0
        self.began = time.monotonic()
        self._bar = None

    def __enter__(self) -> "ShardProgress":
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            console = Console(file=self.stream, force_terminal=True)
            self._bar = Progress(
                TextColumn("recordings {task.fields[recordings]}"),
                BarColumn(),
                TextColumn("shards {task.fields[shards]}"),
                TextColumn("{task.fields[rate]} frames/s"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("process", total=self.seconds_total or 1, **self._fields())
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc_info)

    def done(self, task: Any, result: Any) -> Any:
        """Count one finished shard (its task and its result); returns the result."""
        self.shards_done += 1
        seconds = _seconds(task)
        self.seconds_done += seconds
        self.frames += int(_get(result, "frames") or 0)
        recording = _get(task, "recording_id")
        self.left_by_recording[recording] = self.left_by_recording.get(recording, 1) - 1
        if self._bar is not None:
            self._bar.update(self._task, advance=seconds or (1 if not self.seconds_total else 0), **self._fields())
        else:
            print(f"vigil: shard {self.shards_done}/{self.shards_total} done ({recording}); recordings "
                  f"{self._fields()['recordings']}; {self._fields()['rate']} frames/s; {self._left()}",
                  file=self.stream, flush=True)  # fmt: skip
        return result

    def _fields(self) -> dict:
        recordings = len(self.left_by_recording)
        finished = sum(1 for left in self.left_by_recording.values() if left <= 0)
        elapsed = time.monotonic() - self.began
        rate = f"{self.frames / elapsed:.1f}" if elapsed > 0 and self.shards_done else "-"
        return {"recordings": f"{finished}/{recordings}", "shards": f"{self.shards_done}/{self.shards_total}", "rate": rate}

    def _left(self) -> str:
        if self.shards_done >= self.shards_total:
            return "finished"
        if not self.seconds_done:
            return "time left unknown"
        left = (time.monotonic() - self.began) / self.seconds_done * (self.seconds_total - self.seconds_done)
        return f"about {int(left) // 3600}:{int(left) % 3600 // 60:02d}:{int(left) % 60:02d} left"


def _get(value: Any, name: str) -> Any:
    """A field of a shard task or result, whether it is a dict or a typed object."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _seconds(task: Any) -> float:
    """Seconds of recording a shard covers (0 when the task does not say)."""
    shard = _get(task, "shard")
    if shard is None:
        return 0.0
    start, end = _get(shard, "start"), _get(shard, "end")
    if start is None or end is None:
        return 0.0
    return float(Fraction(str(end)) - Fraction(str(start)))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
