"""Decode one shard and yield one entry per sampling bin, with exact presentation times.

Seek once to the keyframe at or before the shard start, then decode forward (seeking per sample
is slower with long GOPs). ``frame_index`` is the frame's index in the whole stream: counted in
presentation order from the last keyframe the decoder gave back, whose index the probe knows.
Only sampled frames are converted to pixels.

A bin with no decodable frame is still reported, so "nobody was there" is never confused with
"nobody looked": ``undecodable`` when the container holds frames there that could not be decoded
(or indexed), ``no_frame`` when the recording holds no frame in that bin at all (a recorder gap).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import lru_cache
from fractions import Fraction
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from vigil.config import ProcessParams, as_fraction
from vigil.errors import ParameterError, RecordingError
from vigil.probe import Keyframe, RecordingProbe
from vigil.schema import STATUS_NO_FRAME, STATUS_OK, STATUS_UNDECODABLE
from vigil.sharding import ShardRange, sample_bin


@dataclass(frozen=True)
class SampledFrame:
    """One sampling bin's outcome. For ``status == "ok"``, ``image`` is ``(h, w, 3) uint8`` BGR;
    otherwise ``frame_index``, ``pts`` and ``image`` are None and ``seconds`` is the bin start."""

    frame_index: int | None
    pts: int | None
    seconds: Fraction
    image: np.ndarray | None
    status: str = STATUS_OK


def sampled_frames(
    source: BinaryIO,
    uri: str,
    probe: RecordingProbe,
    shard: ShardRange,
    sample_fps: float,
    keyframes: Sequence[Keyframe] = (),
    decoder: str = "cpu",
) -> Iterator[SampledFrame]:
    """The first decodable frame of every sampling bin in ``[shard.start, shard.end)``, then an
    entry for each bin that has none. ``keyframes`` (pts-sorted) lets indexing recover after damage.
    ``decoder`` is ``cpu`` or ``nvdec[:N]`` (from ``choose_decoder``)."""
    import av

    fps = as_fraction(sample_fps)
    first_bin, end_bin = math.ceil(shard.start * fps), math.ceil(shard.end * fps)
    known = {k.pts: k.frame_index for k in keyframes}
    known[shard.anchor_pts] = shard.anchor_index
    bins_with_packets: set[int] = set()
    bins_sampled: set[int] = set()

    try:
        container = av.open(source, mode="r", metadata_errors="ignore", hwaccel=_hwaccel(decoder))
    except (av.error.FFmpegError, OSError) as exc:
        raise RecordingError(uri, f"cannot open for decoding ({exc})") from exc
    with container:
        stream = container.streams.video[0]
        if decoder == "cpu":
            stream.thread_type = "AUTO"  # frame threads; NVDEC decodes on the GPU's own engines
        if shard.anchor_pts > probe.start_pts:
            container.seek(shard.anchor_pts, stream=stream, backward=True, any_frame=False)

        def note_packet(pts: int) -> None:
            seconds = probe.seconds(pts)
            if shard.start <= seconds < shard.end:
                bins_with_packets.add(sample_bin(seconds, sample_fps))

        frame_index, previous_pts = None, None
        for frame in _decode(container, stream, note_packet):
            if frame is None:
                frame_index = None  # frames were lost: indices are unknown until the next keyframe
                continue
            pts = frame.pts
            if pts is None or pts < shard.anchor_pts:
                continue  # before the anchor: the demuxer seeked earlier than asked
            if pts in known:
                frame_index = known[pts]  # (re-)anchor on a keyframe whose index the probe knows
            elif previous_pts is not None and pts <= previous_pts:
                continue  # a leading picture of an open GOP, counted before the anchor
            elif frame_index is not None:
                frame_index += 1
            previous_pts = pts

            seconds = probe.seconds(pts)
            if seconds < shard.start:
                continue
            if seconds >= shard.end:
                break
            current_bin = sample_bin(seconds, sample_fps)
            if current_bin in bins_sampled or frame_index is None:
                continue  # already sampled; or not placeable exactly until the next keyframe
            bins_sampled.add(current_bin)
            # Only sampled frames leave the decoder: an NVDEC frame stays in GPU memory until here.
            yield SampledFrame(frame_index, pts, seconds, frame.to_ndarray(format="bgr24"))

    for missing in range(first_bin, end_bin):
        if missing not in bins_sampled:
            status = STATUS_UNDECODABLE if missing in bins_with_packets else STATUS_NO_FRAME
            yield SampledFrame(None, None, max(shard.start, missing / fps), None, status)


def choose_decoder(params: ProcessParams) -> str:
    """``cpu`` or ``nvdec:N``. ``auto`` takes NVDEC when inference runs on a CUDA device whose
    driver offers it (the H.264/HEVC output is bit-exact either way), else the CPU."""
    if params.decoder == "cpu" or not params.device.startswith("cuda"):
        return "cpu"
    gpu = int(params.device.partition(":")[2] or 0)
    problem = _nvdec_problem(gpu)
    if problem is None:
        return f"nvdec:{gpu}"
    if params.decoder == "nvdec":
        raise ParameterError(f"decoder 'nvdec' is not available on cuda:{gpu} ({problem}); use decoder 'auto' or 'cpu'")
    return "cpu"


@lru_cache(maxsize=None)
def _nvdec_problem(gpu: int) -> str | None:
    """Why NVDEC cannot be used on this GPU, or None when it can (asked once per process)."""
    import av
    from av.codec.hwaccel import hwdevices_available

    if "cuda" not in hwdevices_available():
        return "this FFmpeg build has no CUDA hardware decoding"
    try:
        _hwaccel(f"nvdec:{gpu}").create(av.Codec("h264", "r"))
    except Exception as exc:  # no driver, no GPU, no libnvcuvid: each says so in its own words
        return f"{type(exc).__name__}: {exc}"
    return None


def _hwaccel(decoder: str):
    if decoder == "cpu":
        return None
    from av.codec.hwaccel import HWAccel

    # is_hw_owned: decoded frames stay in GPU memory; only sampled ones are copied out. FFmpeg
    # keeps a CUDA context of its own (PyTorch's primary context has flags FFmpeg refuses to share).
    # Codecs NVDEC cannot decode fall back to the CPU decoder.
    device = decoder.partition(":")[2]
    return HWAccel("cuda", device=device, allow_software_fallback=True, is_hw_owned=True, options={"primary_ctx": "0"})


def _decode(container, stream, note_packet):
    """Frames in presentation order, and None where a damaged packet could not be decoded."""
    import av

    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                note_packet(packet.pts)
            try:
                yield from packet.decode()
            except av.error.FFmpegError:
                yield None  # the bins it belonged to come out as "undecodable"
    except av.error.FFmpegError:
        return  # the container itself is unreadable from here on (a truncated tail)


def keyframes_between(probe: RecordingProbe, start_pts: int, end: Fraction) -> tuple[Keyframe, ...]:
    """The keyframes from ``start_pts`` up to a shard's end: what a shard needs to re-anchor."""
    pts_list = [k.pts for k in probe.keyframes]
    lo = bisect.bisect_left(pts_list, start_pts)
    hi = bisect.bisect_left(pts_list, probe.start_pts + end / probe.tb)
    return probe.keyframes[lo:hi]


def fetch_frames(source: BinaryIO, uri: str, probe: RecordingProbe, wanted: Sequence[tuple[int, float]]) -> Iterator:
    """Decode particular frames, given as ``(frame_index, pts_s)``; yield ``(frame_index, BGR image)``
    in time order, one at a time, so a caller holds one full frame at a time whatever their number.
    A frame that cannot be decoded is left out (review pictures are not worth failing for).
    """
    import av

    with av.open(source, mode="r", metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        for frame_index, pts_s in sorted(set(wanted), key=lambda item: item[1]):
            try:
                image = _decode_at(container, stream, probe, pts_s)
            except av.error.FFmpegError:
                image = None
            if image is not None:
                yield frame_index, image


def _decode_at(container, stream, probe: RecordingProbe, pts_s: float) -> np.ndarray | None:
    """Seek to the keyframe before ``pts_s`` and decode forward to the frame at that time."""
    target = probe.start_pts + Fraction(pts_s).limit_denominator(1_000_000) / probe.tb
    container.seek(max(int(target) - 1, probe.start_pts), stream=stream, backward=True, any_frame=False)
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        seconds = float(probe.seconds(frame.pts))
        if abs(seconds - pts_s) < 1e-6:
            return frame.to_ndarray(format="bgr24")
        if seconds > pts_s + 1:
            return None
    return None
