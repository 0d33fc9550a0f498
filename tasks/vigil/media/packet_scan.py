"""What the probe learns from a recording's packets as it demuxes them, in decode order: every
frame's place on the recording timeline, the keyframes, the packets an edit list hides, the clock's
breaks.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Callable

from vigil.errors import RecordingError
from vigil.media.damage import LostData, Span
from vigil.media.timeline import Clock, Discontinuity

# A recording whose clock spans more than this per frame is not footage but a broken (or hostile)
# clock: two frames 10^14 ms apart would otherwise plan 10^11 sampling bins.
MAX_SECONDS_PER_FRAME = 3600
MAX_DURATION_S = 366 * 24 * 3600
MAX_REORDER_FRAMES = 16  # H.264/HEVC hold at most 16 reference pictures: reordering runs no deeper


@dataclass(frozen=True)
class Keyframe:
    pts: int  # on the recording timeline, in the stream's time base
    frame_index: int  # index of this frame in presentation order, from 0
    pos: int = -1  # byte offset of its packet in the file (-1: the container does not say)
    offset: int = 0  # timeline minus raw clock of its segment (what a shard's Clock starts from)
    step: int = 0  # the clock's last frame step there (where a reset after it is placed)
    # Byte offset of the last packet before it with an offset below its own (-1: none). A byte seek
    # starts there: in an MPEG program stream the keyframe's PES may begin with the previous frame's
    # tail, and a parser that starts at that PES gives the tail the keyframe's time and the keyframe none.
    lead_pos: int = -1


class PacketScan:
    """What the probe collects while demuxing, in decode order."""

    def __init__(self, reorder: int = 0, bytes_tell: bool = False, min_gap: int = 0, clock_jump: int = 0) -> None:
        self.decoded = 0  # packets seen (the decode-order index of the next one)
        self.presentation: list[int] = []
        self.keyframes: list[tuple[int, int, int, int, int]] = []  # (timeline pts, pos, offset, step, lead_pos)
        self.events: list[tuple[str, int, int, int]] = []  # (kind, raw step, timeline tick, pos)
        self.latest: int | None = None
        self.last_duration = 0
        self.hidden = 0  # packets an edit list leaves out
        self.hidden_keyframes: list[tuple[int, int, int, int]] = []
        self._events_seen = 0
        self.lost = LostData(reorder, bytes_tell, min_gap, clock_jump)
        self.untimed = UntimedFrames(reorder)
        self._lost_before = False  # carried to the next packet with a presentation time
        self._positions = (-1, -1)  # the last two byte offsets packets had, the latest first

    def hide(self, packet, clock: Clock) -> None:
        """A packet outside the edit list: no frame of the timeline, but a keyframe among them is
        where decoding starts for the first frames shown (a trim that cut into a group of pictures).
        Edit lists exist in MP4/MOV only, whose clock neither wraps nor resets: raw pts + offset."""
        self.hidden += 1
        if packet.is_keyframe and packet.pts is not None:
            pos = packet.pos if packet.pos is not None else -1
            self.hidden_keyframes.append((packet.pts + clock.offset, pos, clock.offset, clock.step))

    def add(self, placed: int | None, packet, clock: Clock, synthesized: bool, lost_before: bool = False) -> None:
        """One packet; ``lost_before``: the demuxer logged an error since the one before it."""
        self.decoded += 1
        pos = packet.pos if packet.pos is not None else -1
        # A frame's tail can come out with the offset of the PES the next frame begins in: the lead
        # is the last offset below this packet's.
        lead_pos = next((p for p in self._positions if p < pos), -1)
        if pos >= 0 and pos != self._positions[0]:
            self._positions = (pos, self._positions[0])
        if len(clock.events) > self._events_seen:
            for kind, delta, _ in clock.events[self._events_seen :]:
                tick = placed if placed is not None else (clock.previous[0] + clock.offset)
                self.events.append((kind, delta, tick, pos))
            self._events_seen = len(clock.events)
        if placed is None:
            self._lost_before |= lost_before
            if not synthesized:
                self.untimed.packet()
            return  # a packet the muxer left without a presentation time
        if not synthesized:  # a synthesised time is the packet's number: every packet has one
            self.untimed.timed(placed, clock.previous[0] + clock.offset)
        self.presentation.append(placed)
        self.lost.packet(placed, packet, lost_before or self._lost_before)
        self._lost_before = False
        if self.latest is None or placed > self.latest:
            self.latest, self.last_duration = placed, (1 if synthesized else packet.duration or 0)
        if packet.is_keyframe:
            self.keyframes.append((placed, pos, clock.offset, clock.step, lead_pos))

    def timeline(self, uri: str, clock: Clock, judge: Callable[[int, int], str] | None = None) -> dict:
        """The probe's fields that the packets decide (RecordingProbe's), once all are scanned;
        ``judge`` reads the packets around a flag or a gap (damage.LostData.finish)."""
        presentation = sorted(self.presentation)
        rank = {pts: i for i, pts in enumerate(presentation)}
        last_duration = self.last_duration
        if not last_duration:
            gaps = [b - a for a, b in zip(presentation, presentation[1:]) if b > a]
            last_duration = sorted(gaps)[len(gaps) // 2] if gaps else 1
        start, end = presentation[0], presentation[-1] + last_duration
        tb = clock.time_base
        duration = (end - start) * tb
        limit = min(MAX_DURATION_S, MAX_SECONDS_PER_FRAME * len(presentation))
        if duration > limit:
            raise RecordingError(
                uri, f"timestamps span {float(duration):.0f} s for {len(presentation)} frames (more than "
                f"{limit} s, {MAX_SECONDS_PER_FRAME} s a frame at most): the container's clock is broken or forged; "
                "re-export the recording from the recorder, or remux it with fresh timestamps "
                "(ffmpeg -fflags +genpts -i in -c copy out.mp4) and check its times by hand",
            )  # fmt: skip
        keyframes, seen = [], set()
        for pts, pos, offset, step, lead_pos in self.keyframes:
            if pts not in seen:
                seen.add(pts)
                keyframes.append(Keyframe(pts, rank[pts], pos, offset, step, lead_pos))
        for pts, pos, offset, step in self.hidden_keyframes:  # where decoding starts for the first frames shown
            if pts < start and pts not in seen:  # its index: that of the first frame shown after it
                seen.add(pts)
                keyframes.append(Keyframe(pts, 0, pos, offset, step))
        keyframes.sort(key=lambda k: k.pts)
        discontinuities = tuple(
            Discontinuity(kind, round(float((tick - start) * tb), 6), pos, round(float(delta * tb), 6))
            for kind, delta, tick, pos in self.events
        )
        ambiguous = self._ambiguous_times(presentation)
        for pts in ambiguous:
            self.untimed.mistimed(pts)
        return dict(start_pts=start, end_pts=end, frame_count=len(presentation), keyframes=tuple(keyframes),
                    discontinuities=discontinuities, frame_pts=tuple(presentation),
                    repeated_times=len(presentation) - len(rank), hidden_frames=self.hidden,
                    ambiguous_times=ambiguous, damaged=self.lost.finish(end, judge),
                    untimed_frames=self.untimed.count, untimed=self.untimed.finish(end))  # fmt: skip

    def _ambiguous_times(self, presentation: list[int]) -> tuple[int, ...]:
        """The times (sorted) more than one frame has, where some packets carry none (probe.ambiguous_times)."""
        if not self.untimed.count:
            return ()
        return tuple(sorted({a for a, b in zip(presentation, presentation[1:]) if a == b}))


class UntimedFrames:
    """Where the frames of packets without a presentation time lie. An MPEG program stream stamps
    only the first frame that starts in each PES packet, so small frames (a still corridor) often
    carry none; their pictures cannot be placed on the timeline, but a bin where one lies is not
    empty: it holds a frame that is not analysed.

    The k frames of a run between two timed packets are decoded in the k + 1 frame steps after the
    first or before the second (both ends count: a pause may lie between), and shown no later
    than the frames decoded up to the stream's reordering depth after them: the latest timed
    presentation among the next few timed packets bounds them (B-frames running into a slower
    stretch are shown seconds after they are decoded). In a slower stretch the step is its own, so
    the stretch is covered whole. A pause shorter than both ends reads "undecodable", the safe side."""

    def __init__(self, max_delay: int = 0) -> None:
        self.count = 0
        self.spans: list[Span] = []
        self._mistimed: list[Span] = []  # around times two frames share, in any order
        self.max_delay = max_delay  # a presentation delay beyond B-frame reordering is a broken clock, not a delay
        self._run: tuple[int | None, int] | None = None  # (decode tick before the run, packets in it)
        # Ended runs waiting for the timed packets decoded after them:
        # [before, count, after, step before, step after, latest presentation seen, timed packets still to see]
        self._waiting: list[list] = []
        self._decode_tick: int | None = None  # the last timed packet's
        self._delay = 0  # the largest presentation - decode delay seen, in ticks
        self._steps: deque[float] = deque(maxlen=64)  # recent decode steps per frame: their median is the usual one
        self._last_step: float | None = None  # per frame, over the interval up to the last timed packet

    def packet(self) -> None:
        self.count += 1
        before, count = self._run or (self._decode_tick, 0)
        self._run = (before, count + 1)

    def timed(self, placed: int, decode_tick: int) -> None:
        before, count = self._run or (self._decode_tick, 0)
        step = (decode_tick - before) / (count + 1) if before is not None and decode_tick > before else None
        if step is not None:
            self._steps.append(step)
        self._delay = max(self._delay, placed - decode_tick)
        for run in self._waiting:
            run[4] = step if run[4] is None else run[4]
            run[5] = max(run[5], placed)
            run[6] -= 1
        while self._waiting and self._waiting[0][6] <= 0:
            self._place(*self._waiting.pop(0)[:6])
        if self._run:
            self._waiting.append([before, count, decode_tick, self._last_step, None, placed, self._depth() + 1])
            self._run = None
        self._last_step = step
        self._decode_tick = decode_tick

    def mistimed(self, shared: int) -> None:
        """Two frames share the time ``shared`` (probe.ambiguous_times): one of them is an untimed frame
        the parser gave the time of the frame after it, and may be shown up to the reordering delay
        and a step either side of it."""
        reach = min(self._delay, self.max_delay or math.inf) + math.ceil(self._usual_step())
        self._mistimed.append((shared - reach, shared + reach + 1))

    def finish(self, end: int) -> tuple[Span, ...]:
        for run in self._waiting:
            self._place(*run[:6])
        if self._run:
            self._add(self._run[0] if self._run[0] is not None else end, end)
        merged: list[Span] = []
        for lo, hi in sorted([*self.spans, *self._mistimed]):
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return tuple(merged)

    def _depth(self) -> int:
        """Frames of reordering: how many frames decoded after one may be shown before it."""
        return min(math.ceil(self._delay / self._usual_step()), MAX_REORDER_FRAMES)

    def _usual_step(self) -> float:
        return max(statistics.median(self._steps), 1) if self._steps else 1

    def _place(self, before: int | None, count: int, after: int, step_before: float | None,
               step_after: float | None, latest_shown: int) -> None:  # fmt: skip
        usual = self._usual_step()
        own = (after - before) / (count + 1) if before is not None else usual
        around = max((s for s in (step_before, step_after) if s is not None), default=usual)
        # A run in a slower stretch (its neighbours slow too) takes up its whole interval; one beside
        # a pause (its own interval far longer than its neighbours') takes up the usual steps.
        step = math.ceil(max(usual, min(own, around)))
        need = (count + 1) * step  # the decode times the run's frames take up
        depth, cap = self._depth(), self.max_delay or math.inf
        if before is not None:  # decoded just after `before`, shown within the reordering depth at this step
            self._add(before, before + need + min(depth * step, cap) + step)
        # Decoded just before `after`: shown by the latest of the frames decoded next, and within the
        # run's frames and the reordering depth at the pace that follows (a pause there: the cap).
        pace = max(step, math.ceil(step_after or 0))
        self._add(after - need, min(max(latest_shown, after), after + (count + depth + 1) * pace, after + cap) + step)

    def _add(self, lo: int, hi: int) -> None:
        if self.spans and lo <= self.spans[-1][1]:  # runs a few packets apart overlap: keep the list short
            self.spans[-1] = (min(self.spans[-1][0], lo), max(self.spans[-1][1], hi))
        elif lo < hi:
            self.spans.append((lo, hi))
