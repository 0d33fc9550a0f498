"""One monotonic recording timeline from a stream's raw timestamps, followed in decode order.

Recorder exports are not one clean clock: glued segment files restart their clocks (a backward
jump, a "reset"), MPEG's 33-bit 90 kHz clock wraps every 26.5 hours, and recorders skip ahead
(a forward jump). Sorting raw presentation times mixes frames of different segments, so the
clock is followed packet by packet in decode order instead, by ``dts`` (monotonic within a
segment), or ``pts`` where a stream has no ``dts``:

- a backward step (beyond ``pts`` reordering) is a *reset*: the new segment is placed right
  after the previous one (one typical frame step later), so no frame of either is lost;
- a backward step of nearly a whole clock period on a wrapping clock is a *wrap*: the period is
  added, and time goes on continuously;
- a forward step of more than ``FORWARD_JUMP_S`` is a *forward jump*: kept as it is, so the
  bins in it stay ``no_frame`` (the recording has no frame there), and listed.

Each continuous segment has an offset (timeline = raw + offset, in stream time-base ticks). The
probe runs a ``Clock`` over the whole file; a shard runs one from its anchor keyframe, seeded
with the offset and step the probe saw there, and so places every packet exactly as the probe did.
FFmpeg "corrects" one 33-bit wrap itself, relative to the first timestamps it reads, which turns a
reset into a jump of up to 26.5 h forward; timestamps are therefore taken modulo 2^33 first.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

FORWARD_JUMP_S = 10  # a forward step longer than this is listed as a discontinuity (the gap stays)
REORDER_S = 2  # pts (no dts) may step back this far within a segment: B-frame reordering
WRAPPING_FORMATS = {"mpegts": 33, "mpeg": 33, "mpegtsraw": 33}  # MPEG system clocks: 33 bits at 90 kHz


@dataclass(frozen=True)
class Discontinuity:
    """Where the recording's own clock breaks. ``at_s`` is the recording-timeline time of the first
    frame after it (seconds from the first frame); ``byte_pos`` the byte offset of its packet in
    the file (-1: the container does not say); ``jump_s`` the raw clock's step (negative: back)."""

    kind: str  # "reset" | "wrap" | "forward_jump"
    at_s: float
    byte_pos: int
    jump_s: float

    def describe(self) -> str:
        where = f"at {self.at_s:.3f} s (byte {self.byte_pos})"
        if self.kind == "wrap":
            return f"the 33-bit clock wraps {where}: time continues across it"
        if self.kind == "reset":
            return (f"the recorder clock jumps back {-self.jump_s:.3f} s {where} (glued segments or a clock reset): "
                    "the later segment is placed after the earlier one on the recording timeline")  # fmt: skip
        return f"the recorder clock jumps forward {self.jump_s:.3f} s {where}: no frame in that gap"


class Clock:
    """Places packets, fed in decode order, on the recording timeline (ticks of ``time_base``)."""

    def __init__(self, time_base: Fraction, wrap_bits: int = 0, offset: int = 0, step: int = 0):
        self.time_base = time_base
        self.period = 1 << wrap_bits if wrap_bits else 0
        self.offset = offset  # timeline = raw + offset for the current segment
        self.step = step  # the last positive reference step: where a reset's segment is placed
        self.previous: tuple[int, bool] | None = None  # (reference raw tick, was it a dts)
        self.forward_jump = int(FORWARD_JUMP_S / time_base)
        self.reorder = int(REORDER_S / time_base)
        self.events: list[tuple[str, int, int]] = []  # (kind, raw step, index of the packet in this clock)
        self.fed = 0

    def _raw(self, value: int) -> int:
        return value % self.period if self.period else value

    def _centered(self, delta: int) -> int:
        """A difference of two raw ticks on a wrapping clock, taken the short way round."""
        if self.period:
            delta %= self.period
            if delta > self.period // 2:
                delta -= self.period
        return delta

    def place(self, pts: int | None, dts: int | None) -> int | None:
        """The timeline tick of a packet's presentation time (None when it has no pts)."""
        self.fed += 1
        has_dts = dts is not None
        reference = dts if has_dts else pts
        if reference is None:
            return None
        reference = self._raw(reference)
        if self.previous is not None:
            before, before_dts = self.previous
            delta = reference - before
            if self.period and delta < -(self.period // 2):
                wrapped = delta + self.period
                if wrapped <= self.forward_jump:
                    self.offset += self.period
                    self.events.append(("wrap", delta, self.fed - 1))
                    delta = wrapped
            tolerance = 0 if (has_dts and before_dts) else self.reorder
            if delta < -tolerance:
                # A reset: the new segment starts one frame step after the last reference.
                self.offset = before + self.offset + (self.step or 1) - reference
                self.events.append(("reset", delta, self.fed - 1))
            elif delta > self.forward_jump:
                self.events.append(("forward_jump", delta, self.fed - 1))
            elif delta > 0:
                self.step = delta
        self.previous = (reference, has_dts)
        if pts is None:
            return None
        relative = self._centered(self._raw(pts) - reference) if self.period else pts - reference
        return reference + relative + self.offset


def wrap_bits_for(container_format: str) -> int:
    """Bits of the container's clock when it wraps (MPEG-TS/PS), else 0."""
    return max((WRAPPING_FORMATS.get(name, 0) for name in container_format.split(",")), default=0)
