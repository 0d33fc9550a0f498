"""Decode one shard and yield its sampled frames with exact presentation times.

Seek once to the keyframe at or before the shard start, then decode forward (seeking per sample
is slower with long GOPs). Frames are counted in presentation order from that keyframe, whose
index the probe knows, so ``frame_index`` is the frame's index in the whole stream. Only sampled
frames are converted to pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Iterator

import numpy as np

from vigil.errors import RecordingError
from vigil.probe import RecordingProbe
from vigil.sharding import ShardRange, sample_bin


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame. ``image`` is ``(height, width, 3) uint8`` in BGR order."""

    frame_index: int
    pts: int
    seconds: Fraction
    image: np.ndarray


def sampled_frames(
    source: BinaryIO, uri: str, probe: RecordingProbe, shard: ShardRange, sample_fps: float
) -> Iterator[SampledFrame]:
    """The first decodable frame of every sampling bin inside ``[shard.start, shard.end)``."""
    import av

    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as exc:
        raise RecordingError(uri, f"cannot open for decoding ({exc})") from exc
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if shard.anchor_pts > probe.start_pts:
            container.seek(shard.anchor_pts, stream=stream, backward=True, any_frame=False)

        frame_index = None  # unknown until the anchor keyframe comes out of the decoder
        last_bin = None
        try:
            for frame in _decode(container, stream):
                pts = frame.pts
                if pts is None:
                    continue
                if frame_index is None:
                    if pts < shard.anchor_pts:
                        continue  # the demuxer seeked earlier than asked: wait for the anchor
                    if pts > shard.anchor_pts:
                        raise RecordingError(
                            uri, f"seek to keyframe pts {shard.anchor_pts} landed later, at pts {pts}"
                        )
                    frame_index = shard.anchor_index
                elif pts <= previous_pts:
                    continue  # a leading picture of an open GOP, already counted before the anchor
                else:
                    frame_index += 1
                previous_pts = pts

                seconds = probe.seconds(pts)
                if seconds < shard.start:
                    continue
                if seconds >= shard.end:
                    break
                current_bin = sample_bin(seconds, sample_fps)
                if current_bin == last_bin:
                    continue
                last_bin = current_bin
                yield SampledFrame(frame_index, pts, seconds, frame.to_ndarray(format="bgr24"))
        except av.error.FFmpegError as exc:
            raise RecordingError(uri, f"decoding failed in shard {shard.index} ({exc})") from exc


def _decode(container, stream):
    for packet in container.demux(stream):
        yield from packet.decode()
