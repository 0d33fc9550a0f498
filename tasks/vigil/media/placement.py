"""Where a shard starts decoding, and the recording-timeline time of each frame it decodes.

A shard seeks to its anchor keyframe (by byte position where the container has no index) and
replays the probe's ``timeline.Clock`` from there, so every packet lands where the probe put it.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction

from vigil.media.probe import RecordingProbe
from vigil.media.sharding import ShardRange
from vigil.media.timeline import Clock


def seek_to_anchor(container, stream, probe: RecordingProbe, shard: ShardRange, placer: "Placer") -> int | None:
    """Position the demuxer at the shard's anchor keyframe; return the byte position packets
    before which are to be skipped (None: none). Containers without an index (MPEG-TS/PS, raw
    streams) are seeked by the anchor packet's byte position, the one the probe saw: FFmpeg's
    timestamp seek there bisects on timestamps and can land after the keyframe, or in another
    segment of a file whose clock resets. Elsewhere, a timestamp seek on the raw clock."""
    if shard.anchor_pts <= probe.start_pts and shard.anchor_index == 0:
        return None  # from the first packet: the Clock starts as the probe's did
    if probe.byte_seek and shard.anchor_pos >= 0:
        # A packet early, so that the parser meets the keyframe in step (Keyframe.lead_pos).
        target = shard.anchor_lead_pos if 0 <= shard.anchor_lead_pos < shard.anchor_pos else shard.anchor_pos
        container.seek(target, unsupported_byte_offset=True)
        landed = next((p.pos for p in container.demux(stream) if p.pos is not None and p.pos >= 0), None)
        if landed is None or landed > shard.anchor_pos:  # landed past the keyframe: read from the start
            target = 0
        container.seek(target, unsupported_byte_offset=True)
        placer.from_anchor(shard)  # the packets before the anchor's are skipped, not placed
        return shard.anchor_pos
    if probe.discontinuities or probe.synthesized_fps:
        placer.from_start()  # no index and no byte positions: follow the clock from the start
        return None
    container.seek(shard.anchor_pts - shard.anchor_offset, stream=stream, backward=True, any_frame=False)
    placer.from_anchor(shard)
    return None


class Placer:
    """Gives decoded frames their recording-timeline pts: packets are placed by a ``Clock`` in
    decode order, and a frame takes the placement of the earliest pending packet with its raw pts
    (a frame comes out of the decoder some packets after its own, and in another order). With
    synthesised times (no timestamps), frames are numbered in the order the decoder hands them out.
    A packet that is demuxed but not decoded is ``declined``: left pending, it would never be
    matched and every later frame would search past it."""

    def __init__(self, probe: RecordingProbe, anchor_index: int):
        self.probe = probe
        self.period = 1 << probe.wrap_bits if probe.wrap_bits else 0
        self.clock = Clock(probe.tb, probe.wrap_bits)
        self.pending: deque[tuple[int, int, int]] = deque()  # (raw key, timeline pts, segment)
        self.next_synthesized = 0
        self.last_placed: int | None = None  # the timeline pts of the packet placed last
        self._last_pending = False  # whether the last packet placed is still the newest pending entry

    def from_start(self) -> None:
        self.clock = Clock(self.probe.tb, self.probe.wrap_bits)
        self.next_synthesized = 0

    def from_anchor(self, shard: ShardRange) -> None:
        self.clock = Clock(self.probe.tb, self.probe.wrap_bits, shard.anchor_offset, shard.anchor_step)
        self.next_synthesized = shard.anchor_pts

    def _key(self, pts: int) -> int:
        return pts % self.period if self.period else pts

    def packet(self, packet) -> Fraction | None:
        """The timeline time of a demuxed packet (seconds from the first frame), None if unknown."""
        if self.probe.synthesized_fps:
            return None  # the packet order is not the presentation order: frames are timed instead
        placed = self.clock.place(packet.pts, packet.dts)
        self.last_placed = placed
        self._last_pending = placed is not None
        if placed is None:
            return None
        self.pending.append((self._key(packet.pts), placed, len(self.clock.events)))
        if len(self.pending) > _PENDING:
            self.pending.popleft()  # a packet whose frame never came out (damage)
        return self.probe.seconds(placed)

    def declined(self) -> None:
        """The packet just placed will not be decoded: no frame will come out for it."""
        if self._last_pending and self.pending:
            self.pending.pop()
        self._last_pending = False

    def frame(self, frame) -> int | None:
        if self.probe.synthesized_fps:
            placed = self.next_synthesized
            self.next_synthesized += 1
            return placed
        if frame.pts is None:
            return None
        key = self._key(frame.pts)
        self._last_pending = False  # the newest entry may be this frame's, removed below
        for i, (raw, placed, segment) in enumerate(self.pending):
            if raw == key:
                del self.pending[i]
                if self.pending and self.pending[0][2] < segment:
                    # A later segment's frame is out: the earlier segment's frames before it are done;
                    # those after it (B-frames decoded across a wrap or reset) are still to come.
                    self.pending = deque(e for e in self.pending if e[2] >= segment or e[1] > placed)
                return placed
        return None


# Decoded packets whose frame is not out yet: the decoder's delay (frame threads, reordering,
# NVDEC surfaces) is tens of packets; more are frames a damaged stream lost.
_PENDING = 512
