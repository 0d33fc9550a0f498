"""Decode one shard and yield one entry per sampling bin, with exact presentation times.

Seek once to the keyframe at or before the shard start, then decode forward (seeking per sample
is slower with long GOPs). ``frame_index`` is the frame's index in the whole stream: counted in
presentation order from the last keyframe the decoder gave back, whose index the probe knows, by
the packets demuxed since (not by the frames decoded: a damaged stream loses frames silently).
Only sampled frames are converted to pixels.

A bin with no decodable frame is still reported, so "nobody was there" is never confused with
"nobody looked": ``undecodable`` when the container holds frames there that could not be decoded
(or indexed), ``no_frame`` when the recording holds no frame in that bin at all (a recorder gap).
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from vigil.config import sampling_rate
from vigil.errors import RecordingError
from vigil.media.containers import ask_for_open_bytes, display_rotation, upright, video_streams
from vigil.media.damage import bin_runs, without
from vigil.media.decode_plan import DecodePlan, SkippedPictures, SkipUnsafe
from vigil.media.decoders import hwaccel
from vigil.media.probe import MAX_PIXELS, Keyframe, RecordingProbe
from vigil.media.placement import Placer, seek_to_anchor
from vigil.media.status import STATUS_NO_FRAME, STATUS_OK, STATUS_UNDECODABLE
from vigil.media.sharding import ShardRange, runs_without, sample_bin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampledFrame:
    """One sampling bin's outcome. For ``status == "ok"``, ``image`` is ``(h, w, 3) uint8`` BGR;
    otherwise ``frame_index``, ``pts`` and ``image`` are None and ``seconds`` is the bin start.
    A ``no_frame`` entry stands for a whole run of bins, up to ``until`` (exclusive): a gap in
    the recording costs one entry however long it is."""

    frame_index: int | None
    pts: int | None
    seconds: Fraction
    image: np.ndarray | None
    status: str = STATUS_OK
    until: Fraction | None = None


def sampled_frames(
    source: BinaryIO,
    uri: str,
    probe: RecordingProbe,
    shard: ShardRange,
    sample_fps: float,
    keyframes: Sequence[Keyframe] = (),
    decoder: str = "cpu",
    frame_threads: bool = False,
) -> Iterator[SampledFrame]:
    """The first decodable frame of every sampling bin in ``[shard.start, shard.end)``, then an
    entry for each bin that has none. ``keyframes`` (pts-sorted) lets indexing recover after damage.
    ``decoder`` is ``cpu`` or ``nvdec[:N]`` (``decoders.choose_decoder``). ``frame_threads``:
    decode on the CPU with FFmpeg's frame threads, for workers whose model runs elsewhere (a GPU);
    where the model shares the cores, one decoding thread does the same work in a quarter less CPU
    time (frame threads synchronise on every frame, and short runs from a keyframe barely overlap).

    Times are on the recording timeline (``timeline.py``): packets are placed by a Clock seeded at
    the anchor keyframe, and each decoded frame takes the time of the packet it came from.

    On the CPU, pictures nothing refers to are not decoded where they cannot be their bin's first
    frame (``decode_plan.SkippedPictures``); should a check find that skipping could change what
    comes out, the shard is decoded again without skipping, and bins already handed out are not
    handed out twice."""
    fps = sampling_rate(sample_fps)
    first_bin, end_bin = math.ceil(shard.start * fps), math.ceil(shard.end * fps)
    bins = _Bins()
    try:
        yield from _decode_shard(source, uri, probe, shard, fps, keyframes, decoder, frame_threads, bins,
                                 skip_pictures=decoder == "cpu")  # fmt: skip
    except SkipUnsafe as exc:
        log.warning("%s, shard %s: %s; decoding it again without skipping pictures", uri, shard.index, exc)
        source.seek(0)
        yield from _decode_shard(source, uri, probe, shard, fps, keyframes, decoder, frame_threads, bins,
                                 skip_pictures=False)  # fmt: skip
    # Bins where data was lost, or untimed frames lie, hold frames: never "no_frame".
    lost = bin_runs(sorted([*probe.damaged, *probe.untimed]), probe.start_pts, probe.tb, fps, first_bin, end_bin)
    yield from _unanalysed(shard, fps, first_bin, end_bin, bins.sampled, bins.with_packets, lost)


@dataclass
class _Loss:
    """After a packet fails to decode, or a frame comes out flagged corrupt, nothing the decoder
    hands out can be trusted until a keyframe sent after the damaged packet comes out: frames that
    refer to a lost picture come out concealed (an older picture, or grey) without any flag. Those
    bins come out "undecodable". Packets are numbered as they are sent, so the rule holds however
    late the decoder reports the damage (reordering, frame threads)."""

    sent: int = 0  # packets sent to the decoder so far
    numbers: dict = field(default_factory=dict)  # timeline pts -> number of the packet sent with it
    damaged: int = -1  # the latest damaged packet's number
    active: bool = False

    def send(self, placed: int | None) -> None:
        self.sent += 1
        if placed is not None:
            self.numbers[placed] = self.sent

    def begin(self, pts: int | None = None) -> None:
        """A loss: of the packet with this pts, or (None) of the one sent last."""
        self.damaged = max(self.damaged, self.numbers.get(pts, self.sent) if pts is not None else self.sent)
        self.active = True

    def repaired_by(self, pts: int, keyframe: bool) -> bool:
        """Whether this frame, out while a loss is active, ends it: a keyframe sent after the damage."""
        if keyframe and self.numbers.get(pts, -1) > self.damaged:
            self.active = False
        return not self.active


@dataclass
class _OutputOrder:
    """A decoder hands frames out in presentation order, so frame times that go back (other than an
    open group's leading pictures) mean the container's times are not presentation times: AVI
    stores none, and for H.264/HEVC with B-frames a reader gets the decode order instead. Frames
    could then be placed at the wrong time: the recording fails, saying why and what to do."""

    uri: str
    frames: int = 0
    back: int = 0

    def backward(self, earlier: bool) -> None:
        self.back += earlier
        if self.back > 4 and self.back * 50 > self.frames:
            raise RecordingError(
                self.uri, f"frame times go back {self.back} times in {self.frames} frames decoded: the container's "
                "timestamps are not presentation times (H.264/HEVC with B-frames in AVI stores the decode order), "
                "so frames cannot be placed in time exactly. Keep this original; re-export the footage from the "
                "recorder as MP4 or MPEG-TS, or analyse a remux whose times you have checked by hand",
            )  # fmt: skip


@dataclass
class _Bins:
    with_packets: set[int] = field(default_factory=set)  # bins the shard demuxed a packet in
    sampled: set[int] = field(default_factory=set)  # bins whose frame has been handed out


def _decode_shard(source: BinaryIO, uri: str, probe: RecordingProbe, shard: ShardRange, fps: Fraction,
                  keyframes: Sequence[Keyframe], decoder: str, frame_threads: bool, bins: _Bins,
                  skip_pictures: bool) -> Iterator[SampledFrame]:  # fmt: skip
    import av

    known = {k.pts: k.frame_index for k in keyframes}
    known[shard.anchor_pts] = shard.anchor_index
    known[probe.start_pts] = 0  # the first frame shown, also where an edit list hid its keyframe
    plan = DecodePlan([probe.seconds(pts) for pts in sorted(known)], needed_from=shard.start, sample_fps=fps, end=shard.end)
    ask_for_open_bytes(source, probe.index_bytes)
    try:
        container = av.open(source, mode="r", metadata_errors="ignore", hwaccel=hwaccel(decoder))
    except (av.error.FFmpegError, OSError) as exc:
        raise RecordingError(uri, f"cannot open for decoding ({exc})") from exc
    with container:
        stream = video_streams(container)[probe.stream_index]
        stream.codec_context.options = {"max_pixels": str(MAX_PIXELS)}  # a mid-stream size change is refused too
        if decoder == "cpu":  # NVDEC decodes on the GPU's own engines
            stream.thread_type, stream.thread_count = ("AUTO", 0) if frame_threads else ("SLICE", 1)
        placer = Placer(probe, shard.anchor_index)
        skip_before = seek_to_anchor(container, stream, probe, shard, placer)
        skipped = SkippedPictures(stream.codec_context, skip_pictures, probe.seconds(shard.anchor_pts), fps)
        loss = _Loss()
        # Every packet's timeline pts since the anchor, sorted: a frame's index is its predecessor's
        # plus the packets presented between them, so a picture the decoder drops without a word
        # (damage) or is not asked for (skipped) still counts, as the probe counted it.
        demuxed: list[int] = []

        before_anchor = skip_before is not None  # until the anchor's packet comes out

        def wants(packet) -> bool:
            nonlocal before_anchor
            pos = packet.pos if packet.pos is not None else -1
            if skip_before is not None and 0 <= pos < skip_before:
                return False  # before the anchor's packet (a byte seek, or decoding from the start)
            if before_anchor and (pos < 0 or (pos == skip_before and not packet.is_keyframe)):
                return False  # before it too: no offset, or a frame's tail given the anchor's offset
            before_anchor = False
            if packet.is_discard and not probe.synthesized_fps:
                loss.send(None)
                return True  # hidden by an edit list (as in the probe): a reference only, its frame never comes out
            seconds = placer.packet(packet)
            if seconds is not None and placer.last_placed >= shard.anchor_pts:
                bisect.insort(demuxed, placer.last_placed)
            if seconds is not None and shard.start <= seconds < shard.end:
                bins.with_packets.add(sample_bin(seconds, fps))
            if plan.wants(packet.is_keyframe, seconds) and not skipped.skips(packet, seconds, plan.needed_from):
                loss.send(placer.last_placed if seconds is not None else None)
                return True
            placer.declined()
            return False

        frame_index, previous = None, None  # previous: the last frame's (pts, seconds)
        order = _OutputOrder(uri)
        for frame in _decode(container, stream, wants, lambda: plan.finished):
            order.frames += 1
            if frame is None:
                skipped.lost()
                frame_index = None  # frames were lost: indices are unknown until the next keyframe
                loss.begin()
                continue
            pts = placer.frame(frame)
            if pts is None and frame.is_corrupt and previous is not None:  # untimed, decoded with errors
                skipped.lost()
                frame_index = None
                loss.begin()  # (an open group's leading pictures after the seek come out before `previous`)
            if pts is None or pts < shard.anchor_pts:
                continue  # untimed, or before the anchor: the demuxer seeked earlier than asked
            seconds = probe.seconds(pts)
            skipped.came_out(seconds)
            if frame.is_corrupt:  # FFmpeg decoded it with errors
                skipped.lost()
                frame_index = None
                loss.begin(pts)
                continue
            if loss.active and not probe.synthesized_fps and not loss.repaired_by(pts, pts in known):
                continue  # may show concealment, not the scene
            if frame.width * frame.height > MAX_PIXELS:
                frame_index = None  # a mid-stream size change past the cap: not analysed, "undecodable"
                continue
            if pts in known:
                frame_index = known[pts]  # (re-)anchor on a keyframe whose index the probe knows
            elif previous is not None and pts <= previous[0]:
                order.backward(pts < previous[0])
                continue  # a leading picture of an open GOP, counted before the anchor
            elif frame_index is not None and probe.synthesized_fps:
                frame_index += 1 + skipped.between(previous[1], seconds)  # times are given as frames come out
            elif frame_index is not None:
                frame_index += bisect.bisect_right(demuxed, pts) - bisect.bisect_right(demuxed, previous[0])
            previous = (pts, seconds)

            if seconds < shard.start:
                continue
            if seconds >= shard.end:
                break
            current_bin = sample_bin(seconds, fps)
            if current_bin in bins.sampled or frame_index is None or probe.damaged_at(pts) or probe.ambiguous_at(pts):
                continue  # already sampled; not placeable exactly until the next keyframe; near lost data; or a time two share
            bins.sampled.add(current_bin)
            plan.needed_from = (current_bin + 1) / fps  # frames come in time order: earlier bins are closed
            # Only sampled frames leave the decoder: an NVDEC frame stays in GPU memory until here.
            # Turned upright as players show it (phone footage is stored sideways): a person walking
            # must not look like a person lying. Coordinates are in displayed-frame pixels.
            image = upright(frame.to_ndarray(format="bgr24"), display_rotation(frame) or probe.rotation)
            yield SampledFrame(frame_index, pts, seconds, image)
        else:
            skipped.finish(shard.end)  # the decoder is drained: every picture sent must have come out


def _unanalysed(shard: ShardRange, fps: Fraction, first_bin: int, end_bin: int, sampled: set[int],
                with_packets: set[int], lost: list[tuple[int, int]]) -> Iterator[SampledFrame]:  # fmt: skip
    """Entries for the bins without an analysed frame: one per run of empty bins (``no_frame``),
    one per bin that holds frames none of which decoded, or lies where the demuxer lost data
    (``lost``, damage.py): ``undecodable``. Only bins that hold a frame or lost data are visited one
    by one, so the cost is bounded by the frame count and the damage, not the duration."""
    empty = shard.empty_bins
    if empty is None:  # not planned from the frame list: judge from the packets this shard demuxed
        empty = runs_without(sorted(with_packets | sampled), first_bin, end_bin)
    empty = without(empty, lost)
    cursor = first_bin
    for lo, hi in [*empty, (end_bin, end_bin)]:
        for b in range(cursor, min(lo, end_bin)):
            if b not in sampled:
                yield SampledFrame(None, None, max(shard.start, b / fps), None, STATUS_UNDECODABLE)
        if lo < hi:
            yield SampledFrame(None, None, max(shard.start, lo / fps), None, STATUS_NO_FRAME, min(shard.end, hi / fps))
        cursor = max(cursor, hi)


def _decode(container, stream, wants, finished):
    """Frames in presentation order, and None where a damaged packet could not be decoded;
    packets ``wants`` declines are demuxed (their bins are noted) but not decoded. Demuxing stops
    once ``finished()``; the frames the decoder still holds come out then."""
    import av

    try:
        for packet in container.demux(stream):
            if finished():
                packet = None  # flush: a keyframe that took the last bin may still be inside
            elif not wants(packet):
                continue
            try:
                yield from (stream.decode(None) if packet is None else packet.decode())
            except av.error.FFmpegError:
                yield None  # the bins it belonged to come out as "undecodable"
            if packet is None:
                return
    except av.error.FFmpegError:
        return  # the container itself is unreadable from here on (a truncated tail)


def keyframes_between(probe: RecordingProbe, start_pts: int, end: Fraction) -> tuple[Keyframe, ...]:
    """The keyframes from ``start_pts`` up to a shard's end: what a shard needs to re-anchor."""
    lo = bisect.bisect_left(probe.keyframe_pts, start_pts)
    hi = bisect.bisect_left(probe.keyframe_pts, probe.start_pts + end / probe.tb)
    return probe.keyframes[lo:hi]
