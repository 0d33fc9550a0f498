"""What the probe learns from a recording's packets as it demuxes them, in decode order: every
frame's place on the recording timeline, the keyframes, the packets an edit list hides, the clock's
breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vigil.errors import RecordingError
from vigil.media.damage import LostData
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
            return  # a packet the muxer left without a presentation time
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
                    damaged=self.lost.finish(end, judge))  # fmt: skip
