"""Decode particular frames again, by their recording-timeline time: review pictures and clips."""

from __future__ import annotations

import bisect
from fractions import Fraction
from itertools import accumulate
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from vigil.media.containers import ask_for_open_bytes, display_rotation, upright, video_streams
from vigil.media.frames import _decode
from vigil.media.nal import Disposable
from vigil.media.placement import Placer
from vigil.media.probe import MAX_PIXELS, RecordingProbe

PICTURE_READ = 4096


def fetch_frames(source: BinaryIO, uri: str, probe: RecordingProbe, wanted: Sequence[tuple[int, float]]) -> Iterator:
    """Decode particular frames, given as ``(frame_index, pts_s)``; yield ``(frame_index, BGR image)``
    in time order, one at a time, so a caller holds one full frame at a time whatever their number.
    A frame that cannot be decoded is left out (review pictures are not worth failing for).
    Where timestamp seeks cannot be trusted (no index, clock breaks, synthesised times), the
    recording is decoded once from the start, frames placed on the timeline as in ``sampled_frames``.
    A remote ``source`` (one with ``expect``) is told where each picture's bytes end, so that its
    GETs fetch those bytes and no more (``tests/test_bytes_read.py`` counts them).
    """
    import av

    # A picture needs its keyframe and the few frames after it (tens of KiB): a small demuxer
    # buffer makes FFmpeg ask for about that, not for 32 KiB blocks (remote reads: fewer bytes).
    ask_for_open_bytes(source, probe.index_bytes)
    with av.open(source, mode="r", metadata_errors="ignore", buffer_size=PICTURE_READ) as container:
        stream = video_streams(container)[probe.stream_index]
        stream.codec_context.options = {"max_pixels": str(MAX_PIXELS)}
        ordered = sorted(set(wanted), key=lambda item: item[1])
        if probe.byte_seek or probe.discontinuities or probe.synthesized_fps:
            yield from _fetch_in_one_pass(container, stream, probe, ordered)
            return
        stream.thread_count = 1  # a few frames from a keyframe: threads would only add hand-offs
        disposable = Disposable(stream.codec_context)
        expect = getattr(source, "expect", None)  # a remote reader: say where each picture's bytes end
        ends = _SampleEnds(stream, probe) if expect else None
        for frame_index, pts_s in ordered:
            if ends is not None and (end := ends.until(_raw_pts(probe, pts_s))) is not None:
                expect(end)
            image = _picture_at(container, stream, probe, pts_s, disposable)
            if image is not None:
                yield frame_index, image


def _fetch_in_one_pass(container, stream, probe: RecordingProbe, ordered: list[tuple[int, float]]) -> Iterator:
    import av

    placer = Placer(probe, 0)
    pending = list(ordered)

    def wants(packet) -> bool:
        placer.packet(packet)
        return True

    for frame in _decode(container, stream, wants, lambda: not pending):
        if frame is None:
            continue
        pts = placer.frame(frame)
        if pts is None:
            continue
        seconds = float(probe.seconds(pts))
        while pending and pending[0][1] < seconds - 1e-6:
            pending.pop(0)  # never came out of the decoder
        if pending and abs(seconds - pending[0][1]) < 1e-6:
            try:
                yield pending.pop(0)[0], upright(frame.to_ndarray(format="bgr24"), display_rotation(frame) or probe.rotation)
            except av.error.FFmpegError:
                continue


def _picture_at(container, stream, probe: RecordingProbe, pts_s: float, disposable: Disposable) -> np.ndarray | None:
    """The frame at ``pts_s``, decoded from the keyframe before it, or None where it cannot be.
    MP4 seeks by decoding time: with B-frames the seek can land on the keyframe that follows the
    frame (an open group's leading pictures are decoded after their keyframe), so a frame not
    found there starts again from the keyframe before the one landed on."""
    target = _raw_pts(probe, pts_s)
    seek_to = max(int(target) - 1, probe.start_pts)
    for _ in range(3):
        image, landed = _decode_from(container, stream, probe, seek_to, pts_s, disposable)
        if image is None and (landed is None or landed[0] <= target):  # not found with the shortcuts: plainly
            image, landed = _decode_from(container, stream, probe, seek_to, pts_s, None)
        if image is not None or landed is None or landed[0] <= target or landed[1] <= probe.start_pts:
            return image
        seek_to = landed[1] - 1  # before the landed keyframe's decoding time: the keyframe before it
    return None


def _decode_from(container, stream, probe: RecordingProbe, seek_to: int, pts_s: float,
                 shortcuts: Disposable | None) -> tuple[np.ndarray | None, tuple[int, int] | None]:  # fmt: skip
    """Seek to the keyframe at or before ``seek_to`` and decode forward to the frame at ``pts_s``.
    With ``shortcuts`` (a ``Disposable``), the pictures on the way that nothing refers to are left
    out (a fifth less decoding on B-frame footage), and once the frame's own packet is in, the
    decoder is drained instead of fed more: a picture depends only on what precedes it in decoding
    order, so it is bit-identical either way, and neither the packets after it nor their bytes are
    needed (a B-frame decoder otherwise holds the frame back until later packets arrive, often the
    next keyframe). ``shortcuts=None`` decodes every packet as it comes.
    ``(image or None, (pts, dts) landed on)``."""
    import av

    landed = None
    try:
        container.seek(seek_to, stream=stream, backward=True, any_frame=False)
        for packet in container.demux(stream):
            if landed is None and packet.pts is not None:
                landed = (packet.pts, packet.pts if packet.dts is None else packet.dts)
            at_frame = _is_at(probe, packet.pts, pts_s)
            if shortcuts is not None and not at_frame and shortcuts(packet):
                continue
            # Drained (the seek before the next picture resets the decoder) unless frames share
            # times: then the frame shown first at this time may be decoded after this packet.
            drain = shortcuts is not None and at_frame and not probe.repeated_times
            for frame in [*packet.decode(), *(stream.decode(None) if drain else ())]:
                if frame.pts is None:
                    continue
                if _is_at(probe, frame.pts, pts_s):
                    if drain and frame.interlaced_frame:
                        return None, landed  # a field's packet may hold half the frame: decode it plainly
                    return upright(frame.to_ndarray(format="bgr24"), display_rotation(frame) or probe.rotation), landed
                if float(probe.seconds(frame.pts)) > pts_s + 1:
                    return None, landed
            if drain:
                return None, landed  # drained without it: the plain pass decides
    except av.error.FFmpegError:
        pass
    return None, landed


def _raw_pts(probe: RecordingProbe, pts_s: float) -> Fraction:
    return probe.start_pts + Fraction(pts_s).limit_denominator(1_000_000) / probe.tb


class _SampleEnds:
    """Where the bytes needed to decode a frame end, from the container's index of every sample
    (an MP4's sample tables): the furthest byte of any sample up to the frame in decoding order
    (a frame's decoding time is at or before its presentation time). Only where the index lists
    every frame (Matroska cues list keyframes only); otherwise ``until`` says None."""

    def __init__(self, stream, probe: RecordingProbe):
        entries = [(e.timestamp, e.pos + e.size) for e in stream.index_entries if e.pos >= 0 and e.size > 0]
        complete = probe.frame_count and len(entries) >= probe.frame_count and all(
            a[0] <= b[0] for a, b in zip(entries, entries[1:]))  # fmt: skip
        self._decode_times = [t for t, _ in entries] if complete else []
        self._ends = list(accumulate((end for _, end in entries), max)) if complete else []

    def until(self, pts: Fraction) -> int | None:
        index = bisect.bisect_right(self._decode_times, pts) - 1
        return self._ends[index] if index >= 0 else None


def _is_at(probe: RecordingProbe, pts: int | None, pts_s: float) -> bool:
    return pts is not None and abs(float(probe.seconds(pts)) - pts_s) < 1e-6
