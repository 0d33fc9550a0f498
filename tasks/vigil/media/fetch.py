"""Decode particular frames again, by their recording-timeline time: review pictures and clips."""

from __future__ import annotations

from fractions import Fraction
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from vigil.media.containers import display_rotation, upright, video_streams
from vigil.media.frames import _decode
from vigil.media.placement import Placer
from vigil.media.probe import MAX_PIXELS, RecordingProbe

PICTURE_READ = 4096


def fetch_frames(source: BinaryIO, uri: str, probe: RecordingProbe, wanted: Sequence[tuple[int, float]]) -> Iterator:
    """Decode particular frames, given as ``(frame_index, pts_s)``; yield ``(frame_index, BGR image)``
    in time order, one at a time, so a caller holds one full frame at a time whatever their number.
    A frame that cannot be decoded is left out (review pictures are not worth failing for).
    Where timestamp seeks cannot be trusted (no index, clock breaks, synthesised times), the
    recording is decoded once from the start, frames placed on the timeline as in ``sampled_frames``.
    """
    import av

    # A picture needs its keyframe and the few frames after it (tens of KiB): a small demuxer
    # buffer makes FFmpeg ask for about that, not for 32 KiB blocks (remote reads: fewer bytes).
    with av.open(source, mode="r", metadata_errors="ignore", buffer_size=PICTURE_READ) as container:
        stream = video_streams(container)[probe.stream_index]
        stream.codec_context.options = {"max_pixels": str(MAX_PIXELS)}
        ordered = sorted(set(wanted), key=lambda item: item[1])
        if probe.byte_seek or probe.discontinuities or probe.synthesized_fps:
            yield from _fetch_in_one_pass(container, stream, probe, ordered)
            return
        for frame_index, pts_s in ordered:
            try:
                image = _decode_at(container, stream, probe, pts_s)
            except av.error.FFmpegError:
                image = None
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


def _decode_at(container, stream, probe: RecordingProbe, pts_s: float) -> np.ndarray | None:
    """Seek to the keyframe before ``pts_s`` and decode forward to the frame at that time."""
    target = probe.start_pts + Fraction(pts_s).limit_denominator(1_000_000) / probe.tb
    container.seek(max(int(target) - 1, probe.start_pts), stream=stream, backward=True, any_frame=False)
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        seconds = float(probe.seconds(frame.pts))
        if abs(seconds - pts_s) < 1e-6:
            return upright(frame.to_ndarray(format="bgr24"), display_rotation(frame) or probe.rotation)
        if seconds > pts_s + 1:
            return None
    return None
