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


@dataclass(frozen=True)
class Keyframe:
    pts: int  # on the recording timeline, in the stream's time base
    frame_index: int  # index of this frame in presentation order, from 0
    pos: int = -1  # byte offset of its packet in the file (-1: the container does not say)
    offset: int = 0  # timeline minus raw clock of its segment (what a shard's Clock starts from)
    step: int = 0  # the clock's last frame step there (where a reset after it is placed)


class PacketScan:
    """What the probe collects while demuxing, in decode order."""

    def __init__(self, reorder: int = 0, bytes_tell: bool = False, min_gap: int = 0, clock_jump: int = 0) -> None:
        self.decoded = 0  # packets seen (the decode-order index of the next one)
        self.presentation: list[int] = []
        self.keyframes: list[tuple[int, int, int, int]] = []  # (timeline pts, pos, offset, step)
        self.events: list[tuple[str, int, int, int]] = []  # (kind, raw step, timeline tick, pos)
        self.latest: int | None = None
        self.last_duration = 0
        self.hidden = 0  # packets an edit list leaves out
        self.hidden_keyframes: list[tuple[int, int, int, int]] = []
        self._events_seen = 0
        self.lost = LostData(reorder, bytes_tell, min_gap, clock_jump)
        self.untimed = UntimedFrames(reorder)
        self._lost_before = False  # carried to the next packet with a presentation time

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
            self.keyframes.append((placed, pos, clock.offset, clock.step))

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
        for pts, pos, offset, step in self.keyframes:
            if pts not in seen:
                seen.add(pts)
                keyframes.append(Keyframe(pts, rank[pts], pos, offset, step))
        for pts, pos, offset, step in self.hidden_keyframes:  # where decoding starts for the first frames shown
            if pts < start and pts not in seen:  # its index: that of the first frame shown after it
                seen.add(pts)
                keyframes.append(Keyframe(pts, 0, pos, offset, step))
        keyframes.sort(key=lambda k: k.pts)
        discontinuities = tuple(
            Discontinuity(kind, round(float((tick - start) * tb), 6), pos, round(float(delta * tb), 6))
            for kind, delta, tick, pos in self.events
        )
        return dict(start_pts=start, end_pts=end, frame_count=len(presentation), keyframes=tuple(keyframes),
                    discontinuities=discontinuities, frame_pts=tuple(presentation),
                    repeated_times=len(presentation) - len(rank), hidden_frames=self.hidden,
                    damaged=self.lost.finish(end, judge), untimed_frames=self.untimed.count,
                    untimed=self.untimed.finish(end))  # fmt: skip


class UntimedFrames:
    """Where the frames of packets without a presentation time lie. An MPEG program stream stamps
    only the first frame that starts in each PES packet, so small frames (a still corridor) often
    carry none; their pictures cannot be placed on the timeline. Such a frame is decoded after the
    timed packet before it and before the one after it, and shown at most the stream's largest
    presentation delay later: within that span a bin without a timed frame is not empty, it holds
    a frame that is not analysed. Where the two timed packets lie further apart than the untimed
    ones need (a pause), the frames lie after the first or before the second: both ends count,
    not the pause."""

    def __init__(self, max_delay: int = 0) -> None:
        self.count = 0
        self.spans: list[Span] = []
        self.max_delay = max_delay  # a presentation delay beyond B-frame reordering is a broken clock, not a delay
        self._run: tuple[int | None, int] | None = None  # (decode tick before the run, packets in it)
        self._decode_tick: int | None = None  # the last timed packet's
        self._delay = 0  # the largest presentation - decode delay seen
        self._steps: deque[float] = deque(maxlen=64)  # recent decode steps per frame: their median is the frame step

    def packet(self) -> None:
        self.count += 1
        before, count = self._run or (self._decode_tick, 0)
        self._run = (before, count + 1)

    def timed(self, placed: int, decode_tick: int) -> None:
        self._delay = max(self._delay, min(placed - decode_tick, self.max_delay or placed - decode_tick))
        before, count = self._run or (self._decode_tick, 0)
        if before is not None and decode_tick > before:
            self._steps.append((decode_tick - before) / (count + 1))
        if self._run:
            step = math.ceil(statistics.median(self._steps)) if self._steps else 1
            need = (count + 1) * step  # the decode times k untimed frames take up
            end = decode_tick + self._delay + step
            if before is None:
                self._add(decode_tick - need, end)
            elif decode_tick - before <= 2 * need:
                self._add(before, end)
            else:  # a pause between: the frames lie at one end or the other
                self._add(before, before + need + self._delay + step)
                self._add(decode_tick - need, end)
            self._run = None
        self._decode_tick = decode_tick

    def finish(self, end: int) -> tuple[Span, ...]:
        if self._run:
            self._add(self._run[0] if self._run[0] is not None else end, end)
        merged: list[Span] = []
        for lo, hi in sorted(self.spans):
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return tuple(merged)

    def _add(self, lo: int, hi: int) -> None:
        if self.spans and lo <= self.spans[-1][1]:  # runs a few packets apart overlap: keep the list short
            self.spans[-1] = (min(self.spans[-1][0], lo), max(self.spans[-1][1], hi))
        elif lo < hi:
            self.spans.append((lo, hi))
