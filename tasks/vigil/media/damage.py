"""Where a demuxer reading front to back lost damaged bytes: the frames stored in them leave no
packet, so without this their bins would read ``no_frame``, like a recorder gap.

The demuxer says so itself, in one of two ways. MPEG-TS flags a packet near a hole in its data (a
continuity counter that skips, the transport error bit, a PES of the wrong size) as corrupt.
Matroska and the others log an error while they resynchronise and go on with the next packet they
find: the lost data lies before that one.

A damage span runs from the decode time of the last packet that may hold lost data (every lost
frame was decoded after it, and is shown no earlier than it is decoded) to the presentation time of
the first intact keyframe after the lost data (nothing decoded before a keyframe is shown after it). Frames in a
span are not analysed (they may refer to a lost picture and come out concealed), and its bins that
hold no frame are ``undecodable``, never ``no_frame``. In MPEG-TS the packets themselves are read
where needed (``LostData``): segment files glued together (DVR exports) restart their counters at
each join without anything lost, and a gap may hide damage the counter check missed.
"""

from __future__ import annotations

import bisect
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterator, Sequence

from vigil.media.ts_packets import PACKET_SIZES

Span = tuple[int, int]  # [from, to) in timeline ticks
# Flags and gaps judged by reading the packets around them (a few kB each); past these, a flag
# counts as damage (the safe reading: a stream this broken has lost data somewhere) and a gap as a gap.
MAX_BYTE_CHECKS = 1000
MAX_SIGNALS = 64  # kept per span; a span with more is lost data, whatever they say
CALM_PACKETS = 2  # packets in step after a span's last packet at risk: a jump after them is not its loss
AV_LOG_ERROR = 16  # FFmpeg's AV_LOG_ERROR (av.logging.ERROR), part of its ABI: read per packet, no import


@contextmanager
def demuxer_errors() -> Iterator[list]:
    """The messages FFmpeg logs in this thread while the block runs (errors at least), as
    ``(level, component, text)``. Logging is global in FFmpeg: only the probe's demuxing, which
    starts no decoding threads, runs under it, and the previous settings come back after."""
    import av.logging

    level, skip_repeated = av.logging.get_level(), av.logging.get_skip_repeated()
    if level is None or level < av.logging.ERROR:
        av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # two damaged places may log the same words
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        av.logging.set_skip_repeated(skip_repeated)
        av.logging.set_level(level)


def errors_in(logs: list) -> bool:
    """Whether ``logs`` hold an error (or worse), and forget them."""
    found = any(level <= AV_LOG_ERROR for level, _, _ in logs)
    logs.clear()
    return found


@dataclass
class _Signal:
    # "flagged" (the demuxer flagged a packet), "logged" (it logged an error), "resync" (MPEG-TS video packets
    # not a whole number of transport packets apart), "gap" (a step in decode times, MPEG-TS: lost if its bytes are)
    kind: str
    pos: int = -1  # byte position of the flagged packet, or of the one before the gap
    after_pos: list[int] = field(default_factory=list)  # a flag: the keyframes' after it; a gap: the packet's after it
    to_keyframe: bool = False  # a gap: the packet after it is a keyframe (where a glued segment starts)


@dataclass
class _Loss:
    start: int  # the span's start (timeline ticks)
    at_risk: int  # packets still to come that may hold lost data
    signals: list[_Signal]  # what the demuxer said, or the decode times showed, while it was open
    end: int | None = None
    calm: int = 0  # packets in a row since the last one at risk


class LostData:
    """Damage spans, collected from packets placed on the timeline in decode order.

    Where a demuxer hands its data to a parser (MPEG-TS, MPEG-PS), the parser puts out each frame
    one packet late, with the flags of the data that completed it: a flag lands on the packet
    before the one with the hole (seen on every random damage tried in H.264 MPEG-TS). So the
    packet a signal comes with and the one after it may both hold lost data: only a keyframe
    after both ends the span. Signals while a span is open join it: however broken a stream, it
    has no more spans than keyframes.

    ``bytes_tell``: the container's own packets can be read to judge a flag or a gap in the decode
    times (MPEG-TS, ts_packets.py). A flag whose bytes run on intact into a keyframe where the
    counters restart is a segment join, not damage; a gap whose bytes are damaged is lost data
    even where the demuxer's counter check missed it (one skip in 16 keeps the counter in step)."""

    def __init__(self, reorder: int, bytes_tell: bool = False, min_gap: int = 0, clock_jump: int = 0) -> None:
        self.reorder = reorder  # the most a decode time may precede its presentation time, in ticks
        self.bytes_tell = bytes_tell
        self.min_gap = min_gap  # the shortest step in decode times worth judging (ticks)
        self.clock_jump = clock_jump  # a longer step is a forward jump of the clock (timeline.py), in ticks
        self.losses: list[_Loss] = []
        self.open: _Loss | None = None  # the span that signals join
        self.gap: _Loss | None = None  # the latest gap's span, waiting for its keyframe
        self.previous: tuple[int, int] | None = None  # the packet before: (timeline dts, byte position)
        self.latest = None  # the latest presentation time so far
        self.step = 0  # the last step between decode times
        self.gaps = 0  # gap signals so far
        self.judged = 0  # signals judged by reading bytes

    def packet(self, placed: int, packet, lost_before: bool) -> None:
        """One packet, at timeline pts ``placed``; ``lost_before``: the demuxer logged an error
        since the packet before it."""
        dts = placed
        if packet.dts is not None and packet.pts is not None:  # the same segment offset as its pts
            dts = min(placed, max(placed - self.reorder, placed - (packet.pts - packet.dts)))
        pos = packet.pos if packet.pos is not None else -1
        intact_keyframe = packet.is_keyframe and not packet.is_corrupt
        if self.previous is None and lost_before:  # lost before the first packet: the first are at risk
            self._signal(dts, 2, _Signal("logged"))
        if self.previous is not None:
            before, before_pos = self.previous
            gap = bool(self.step) and dts - before > max(2 * self.step, self.min_gap)
            if gap and self.open is not None and self.open.calm >= CALM_PACKETS:
                self._stop_at_gap(pos if intact_keyframe else None)
            if lost_before and self.clock_jump and dts - before > self.clock_jump:
                # Lost data, then a clock jump: the jump is the recorder's (a pause would otherwise turn
                # into hours of damage); the loss is taken to lie within one jump's length of the
                # packet before it, and the packets after the jump are at risk as usual.
                self._signal(before, 0, _Signal("logged"))
                self.open.end, self.open = before + self.clock_jump, None
                self._signal(dts, 2, _Signal("logged"))
            elif lost_before:  # the packet before may hold the hole's start
                self._signal(before, 2, _Signal("logged"))
            elif self.bytes_tell and before_pos >= 0 <= pos and not _whole_packets_apart(pos - before_pos):
                self._signal(before, 1, _Signal("resync"))  # the demuxer skipped bytes that were not transport packets
            if self.bytes_tell and gap and self.gaps < MAX_BYTE_CHECKS:
                self.gaps += 1  # a pause, a slower rate, or lost frames: judged by the bytes between
                if self.gap is not None:  # the gap before, still without its keyframe, ends before this one
                    self.gap.end = max(self.gap.start + 1, self.latest + 1)
                self.gap = _Loss(before, 1, [_Signal("gap", before_pos, [pos], to_keyframe=intact_keyframe)])
                self.losses.append(self.gap)
            if dts > before:
                self.step = dts - before
        for loss in (self.open, self.gap):
            if loss is None:
                continue
            if intact_keyframe:
                for signal in loss.signals:
                    if signal.kind == "flagged":
                        signal.after_pos.append(pos)
            if loss.at_risk == 0 and intact_keyframe:
                loss.end = placed
                self.open = None if loss is self.open else self.open
                self.gap = None if loss is self.gap else self.gap
            loss.calm = loss.calm + 1 if loss.at_risk == 0 else 0
            loss.at_risk = max(0, loss.at_risk - 1)
        if packet.is_corrupt:
            self._signal(dts, 1, _Signal("flagged", pos))
        self.previous = (dts, pos)
        self.latest = placed if self.latest is None else max(self.latest, placed)

    def at_end(self) -> None:
        """Data was lost after the last packet: it and the frames shown after it may be concealed."""
        if self.previous is not None:
            self._signal(self.previous[0], 0, _Signal("logged"))

    def _stop_at_gap(self, keyframe_pos: int | None) -> None:
        """A span open when the decode times jump (a pause, a clock jump) ends before the jump, if
        packets came in step after its lost data (``CALM_PACKETS``; else the jump may be what
        was lost): it must not turn a recorder's pause into damage. A keyframe right after the
        jump is where a flag is judged (a segment join)."""
        loss, self.open = self.open, None
        for signal in loss.signals:
            if signal.kind == "flagged" and keyframe_pos is not None:
                signal.after_pos.append(keyframe_pos)
        loss.end = max(loss.start + 1, self.latest + 1)

    def _signal(self, start: int, at_risk: int, signal: _Signal) -> None:
        if self.open is None:
            self.open = _Loss(start, at_risk, [signal])
            self.losses.append(self.open)
            return
        loss = self.open
        loss.start, loss.at_risk = min(loss.start, start), max(loss.at_risk, at_risk)
        if len(loss.signals) < MAX_SIGNALS:
            loss.signals.append(signal)
        elif loss.signals[-1].kind != "logged":
            loss.signals.append(_Signal("logged"))  # too broken to judge signal by signal: lost data

    def finish(self, end: int, judge: Callable[[int, int], str] | None = None) -> tuple[Span, ...]:
        """The spans, merged; one still open at the end runs to ``end``. ``judge(from_pos, to_pos)``
        reads the container's packets between two byte positions: "intact", "restarted" (intact
        up to a segment join at ``to_pos``) or "damaged" (ts_packets.py). A span whose every signal
        is judged harmless (a join, a pause) is dropped."""
        spans = []
        for loss in self.losses:
            if not any(self._lost(signal, judge) for signal in loss.signals):
                continue
            hi = end if loss.end is None else loss.end
            if loss.start < hi:
                spans.append((loss.start, hi))
        merged: list[Span] = []
        for lo, hi in sorted(spans):
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return tuple(merged)

    def _lost(self, signal: _Signal, judge: Callable[[int, int], str] | None) -> bool:
        """Whether a signal means lost data; a flag counts as lost, and a gap as a gap, unless judged."""
        if signal.kind in ("logged", "resync"):
            return True
        if judge is None or signal.pos < 0 or self.judged >= MAX_BYTE_CHECKS:
            return signal.kind == "flagged"
        self.judged += 1
        verdicts = [judge(signal.pos, after) for after in signal.after_pos[:3] if after > signal.pos]
        if signal.kind == "flagged":
            return "restarted" not in verdicts  # a segment join: nothing lost
        if not verdicts or verdicts[0] == "unjudged":
            return False  # too far apart to tell: a gap stays a gap
        # A pause keeps the counters in step; a glued segment restarts them at its first keyframe.
        return not (verdicts[0] == "intact" or (verdicts[0] == "restarted" and signal.to_keyframe))


def _whole_packets_apart(distance: int) -> bool:
    """Whether two MPEG-TS video packets lie a whole number of transport packets apart (in any of
    the packet sizes in use): where they do not, the demuxer lost sync and skipped bytes."""
    return any(distance % size == 0 for size in PACKET_SIZES)


def inside(spans: Sequence[Span], pts: int) -> bool:
    """Whether timeline ``pts`` lies in a damage span (``spans`` sorted, disjoint)."""
    i = bisect.bisect_right(spans, (pts, math.inf)) - 1
    return i >= 0 and spans[i][0] <= pts < spans[i][1]


def bin_runs(spans: Sequence[Span], start_pts: int, tb: Fraction, fps: Fraction, first: int, end: int) -> list[Span]:
    """The sampling bins ``[lo, hi)`` within ``[first, end)`` that a damage span touches."""
    runs = []
    for lo, hi in spans:
        a = max(first, math.floor((lo - start_pts) * tb * fps))
        b = min(end, math.ceil((hi - start_pts) * tb * fps))
        if a < b:
            runs.append((a, b))
    return runs


def without(runs: Sequence[Span], holes: Sequence[Span]) -> list[Span]:
    """``runs`` (sorted, disjoint) minus ``holes``."""
    result = []
    for lo, hi in runs:
        for a, b in holes:
            if b <= lo or a >= hi:
                continue
            if a > lo:
                result.append((lo, a))
            lo = max(lo, b)
            if lo >= hi:
                break
        if lo < hi:
            result.append((lo, hi))
    return result
