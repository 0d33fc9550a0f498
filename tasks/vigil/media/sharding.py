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

from vigil.config import ProcessParams, as_fraction, sampling_rate
from vigil.media.probe import RecordingProbe

MAX_SHARDS = 1024  # Airflow's default [core] max_map_length


@dataclass(frozen=True)
class ShardRange:
    """One shard: frames with ``start_s <= t < end_s`` (seconds from the first frame)."""

    index: int
    start: Fraction
    end: Fraction
    anchor_pts: int  # keyframe to seek to before decoding
    anchor_index: int  # that keyframe's frame index in presentation order

    def to_dict(self) -> dict:
        values = asdict(self)
        values["start"], values["end"] = str(self.start), str(self.end)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "ShardRange":
        return cls(
            index=int(values["index"]),
            start=Fraction(values["start"]),
            end=Fraction(values["end"]),
            anchor_pts=int(values["anchor_pts"]),
            anchor_index=int(values["anchor_index"]),
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
    shards = []
    for index in range(count):
        start = index * length
        end = min((index + 1) * length, duration)
        anchor = probe.keyframe_at_or_before(start)
        shards.append(ShardRange(index, start, end, anchor.pts, anchor.frame_index))
    return shards


def sample_bin(seconds: Fraction, sample_fps: float) -> int:
    """The sampling bin a time falls in: ``floor(seconds * sample_fps)``, exactly."""
    return math.floor(seconds * sampling_rate(sample_fps))
