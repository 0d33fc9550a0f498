"""Pure shard planning and sampling: (probe, parameters) -> half-open time ranges and sample bins.

Sampling is defined on a global grid so that it cannot depend on how a recording is cut:
time from the first frame is divided into bins of ``1 / sample_fps`` seconds, and the sampled
frame of a bin is the first frame (in presentation order) whose pts falls in it. Shards are
whole numbers of bins, ``[i * shard_seconds, (i + 1) * shard_seconds)``, so every bin — and so
every sampled frame — belongs to exactly one shard, whatever the shard length.
All arithmetic is exact (Fractions of the stream time base).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Iterable

from vigil.config import ProcessParams, as_fraction, sampling_rate
from vigil.media.probe import RecordingProbe

MAX_SHARDS = 1024  # Airflow's default [core] max_map_length


@dataclass(frozen=True)
class ShardRange:
    """One shard: frames with ``start_s <= t < end_s`` (seconds from the first frame)."""

    index: int
    start: Fraction
    end: Fraction
    anchor_pts: int  # keyframe to seek to before decoding (recording timeline)
    anchor_index: int  # that keyframe's frame index in presentation order
    anchor_pos: int = -1  # its packet's byte position (seek target in containers without an index)
    anchor_offset: int = 0  # its segment's timeline offset, and the clock step there (timeline.Clock)
    anchor_step: int = 0
    anchor_lead_pos: int = -1  # where a byte seek starts, a packet before the anchor's (Keyframe.lead_pos)
    # Byte position of the first keyframe at or after ``end``: what a shard reads stops about there
    # (a read-ahead bound for remote reads, never a cut-off). -1: unknown, or the end of the file.
    end_pos: int = -1
    # Runs of sampling bins ``[first, end)`` in which the container holds no frame at all: these,
    # and only these, are ``no_frame``; every other bin without an analysed frame is ``undecodable``.
    # None: not known (a shard planned without the frame list): judged from the packets demuxed.
    empty_bins: tuple[tuple[int, int], ...] | None = None

    def to_dict(self) -> dict:
        values = asdict(self)
        values["start"], values["end"] = str(self.start), str(self.end)
        values["empty_bins"] = None if self.empty_bins is None else [list(run) for run in self.empty_bins]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "ShardRange":
        return cls(
            index=int(values["index"]),
            start=Fraction(values["start"]),
            end=Fraction(values["end"]),
            anchor_pts=int(values["anchor_pts"]),
            anchor_index=int(values["anchor_index"]),
            anchor_pos=int(values.get("anchor_pos", -1)),
            anchor_offset=int(values.get("anchor_offset", 0)),
            anchor_step=int(values.get("anchor_step", 0)),
            anchor_lead_pos=int(values.get("anchor_lead_pos", -1)),
            end_pos=int(values.get("end_pos", -1)),
            empty_bins=None if values.get("empty_bins") is None else tuple(tuple(r) for r in values["empty_bins"]),
        )


def effective_shard_seconds(duration: Fraction, params: ProcessParams, max_shards: int = MAX_SHARDS) -> Fraction:
    """The shard length to use: the requested one, grown by whole multiples if the recording
    would otherwise need more than ``max_shards`` shards (Airflow's mapping limit)."""
    length = as_fraction(params.shard_seconds)
    needed = math.ceil(duration / length) if duration > 0 else 1
    if needed <= max_shards:
        return length
    return length * math.ceil(needed / max_shards)


def plan_shards(probe: RecordingProbe, params: ProcessParams, max_shards: int = MAX_SHARDS) -> list[ShardRange]:
    """Cut a recording into shards that tile ``[0, duration)`` with no gap and no overlap."""
    duration = probe.duration
    length = effective_shard_seconds(duration, params, max_shards)
    count = max(1, math.ceil(duration / length))
    fps = as_fraction(params.sample_fps)
    empty = empty_bin_runs(probe, fps) if probe.frame_pts else None
    shards = []
    for index in range(count):
        start = index * length
        end = min((index + 1) * length, duration)
        anchor = probe.keyframe_at_or_before(start)
        runs = None if empty is None else _clip(empty, math.ceil(start * fps), math.ceil(end * fps))
        shards.append(ShardRange(index, start, end, anchor.pts, anchor.frame_index, anchor.pos, anchor.offset,
                                 anchor.step, anchor.lead_pos, _end_pos(probe, end, anchor.pos), runs))  # fmt: skip
    return shards


def _end_pos(probe: RecordingProbe, end: Fraction, anchor_pos: int) -> int:
    """The byte position of the first keyframe at or after ``end`` (every frame before ``end`` is
    stored before it, in decode order), or -1 where that says nothing (last shard, no positions,
    or file order unlike time order)."""
    after = probe.keyframe_at_or_after(end)
    if after is None or anchor_pos < 0 or after.pos <= anchor_pos:
        return -1
    return after.pos


def empty_bin_runs(probe: RecordingProbe, fps: Fraction) -> list[tuple[int, int]]:
    """Runs ``[first, end)`` of sampling bins holding no frame of the recording, in one pass over
    the frames (integer arithmetic: a day of 25-fps footage is 2 million frames). A gap costs one
    run however long it is."""
    tb = probe.tb
    num, den = tb.numerator * fps.numerator, tb.denominator * fps.denominator
    start = probe.start_pts
    return runs_without(((pts - start) * num // den for pts in probe.frame_pts), 0, math.ceil(probe.duration * fps))


def runs_without(occupied: Iterable[int], first: int, end: int) -> list[tuple[int, int]]:
    """Runs ``[lo, hi)`` of the bins in ``[first, end)`` that none of ``occupied`` (ascending) is in:
    the recording's gaps at planning, or a shard's, judged from the packets it demuxed."""
    runs, cursor = [], first
    for b in occupied:
        if b >= end:
            break
        if b > cursor:
            runs.append((cursor, b))
        cursor = max(cursor, b + 1)
    if end > cursor:
        runs.append((cursor, end))
    return runs


def _clip(runs: list[tuple[int, int]], first: int, end: int) -> tuple[tuple[int, int], ...]:
    import bisect

    i = max(bisect.bisect_right(runs, (first, first)) - 1, 0)
    clipped = []
    for lo, hi in runs[i:]:
        if lo >= end:
            break
        lo, hi = max(lo, first), min(hi, end)
        if lo < hi:
            clipped.append((lo, hi))
    return tuple(clipped)


def sample_bin(seconds: Fraction, sample_fps: float) -> int:
    """The sampling bin a time falls in: ``floor(seconds * sample_fps)``, exactly."""
    return math.floor(seconds * sampling_rate(sample_fps))
