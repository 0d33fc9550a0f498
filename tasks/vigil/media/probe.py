"""What a recording is: time base, first and last presentation time, frame count, keyframes.

The probe demuxes the video stream's packets (no decoding) once per recording. Time is always
``pts * time_base`` from the container, never ``index / fps``: surveillance recorders write
variable frame rates, and headers lie about frame counts.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import BinaryIO

from vigil.errors import RecordingError

MAX_PIXELS = 4096 * 4096  # FFmpeg's own fuzzing cap; larger headers are refused before decoding


@dataclass(frozen=True)
class Keyframe:
    pts: int  # in the stream's time base
    frame_index: int  # index of this frame in presentation order, from 0


@dataclass(frozen=True)
class RecordingProbe:
    """Facts about a recording's video stream, all derived from the container's own timestamps.

    ``keyframes`` is sorted by pts; ``end_pts`` is exclusive (last frame's pts plus its duration).
    """

    container_format: str
    codec: str
    width: int
    height: int
    time_base: str  # "num/den", exact
    start_pts: int
    end_pts: int
    frame_count: int
    keyframes: tuple[Keyframe, ...]
    declared_frames: int = 0  # what the container header claims (0: it does not say)
    rotation: int = 0  # display rotation in degrees; frames are analysed as stored, unrotated

    @property
    def warnings(self) -> list[str]:
        """Facts about the recording an investigator must know before trusting its coverage."""
        notes = []
        if self.declared_frames and self.frame_count < self.declared_frames:
            notes.append(
                f"the container declares {self.declared_frames} frames but only {self.frame_count} are readable: "
                "the recording is truncated or damaged"
            )
        if self.rotation:
            notes.append(f"display rotation {self.rotation}°: coordinates are in stored-frame pixels, unrotated")
        return notes

    @property
    def tb(self) -> Fraction:
        return Fraction(self.time_base)

    @property
    def duration(self) -> Fraction:
        """Exact duration in seconds from the first frame's pts to the end of the last frame."""
        return (self.end_pts - self.start_pts) * self.tb

    @property
    def average_fps(self) -> float:
        return float(self.frame_count / self.duration) if self.duration else 0.0

    def seconds(self, pts: int) -> Fraction:
        """Seconds from the first frame (exact)."""
        return (pts - self.start_pts) * self.tb

    def keyframe_at_or_before(self, seconds: Fraction) -> Keyframe:
        """The keyframe to seek to so that decoding forward reaches ``seconds``."""
        target = self.start_pts + seconds / self.tb
        i = bisect.bisect_right([k.pts for k in self.keyframes], target) - 1
        return self.keyframes[max(i, 0)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RecordingProbe":
        values = dict(values)
        values["keyframes"] = tuple(Keyframe(**k) if isinstance(k, dict) else Keyframe(*k) for k in values["keyframes"])
        return cls(**values)


def probe(source: BinaryIO, uri: str) -> RecordingProbe:
    """Demux every video packet of ``source`` (no decoding) and describe the stream.

    Raises RecordingError (not retryable) naming ``uri`` for anything that is not a readable
    video: no video stream, no timestamps, absurd dimensions, a container FFmpeg cannot parse.
    """
    import av

    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise RecordingError(uri, f"not a readable media container ({_reason(exc)})") from exc
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise RecordingError(uri, f"no video stream (streams found: {', '.join(kinds)})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise RecordingError(uri, f"video stream declares no frame size ({width}×{height})")
        if width * height > MAX_PIXELS:
            raise RecordingError(uri, f"declared frame size {width}×{height} exceeds the 4096×4096 pixel limit")
        if stream.time_base is None:
            raise RecordingError(uri, "video stream has no time base")
        # Read everything needed from the stream now: its fields are invalid once it is closed.
        time_base = f"{stream.time_base.numerator}/{stream.time_base.denominator}"
        container_format, codec = container.format.name, ctx.name
        declared_frames = int(stream.frames or 0)
        rotation = _rotation(container, stream)

        presentation, keyframe_pts = [], []
        latest_pts, last_duration = None, 0
        try:
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue  # the flush packet, or a packet the muxer left without a timestamp
                if latest_pts is None or packet.pts > latest_pts:
                    latest_pts, last_duration = packet.pts, packet.duration or 0
                presentation.append(packet.pts)
                if packet.is_keyframe:
                    keyframe_pts.append(packet.pts)
        except av.error.FFmpegError as exc:
            if not presentation:
                raise RecordingError(uri, f"cannot read packets ({_reason(exc)})") from exc
            # A truncated tail: keep what was readable; the shard plan covers only that.

    if not presentation:
        raise RecordingError(uri, "video stream holds no frames with timestamps")
    if not keyframe_pts:
        raise RecordingError(uri, "video stream has no keyframe to start decoding from")

    presentation.sort()
    rank = {pts: i for i, pts in enumerate(presentation)}
    if not last_duration:
        gaps = [b - a for a, b in zip(presentation, presentation[1:]) if b > a]
        last_duration = sorted(gaps)[len(gaps) // 2] if gaps else 1
    return RecordingProbe(
        container_format=container_format,
        codec=codec,
        width=width,
        height=height,
        time_base=time_base,
        start_pts=presentation[0],
        end_pts=presentation[-1] + last_duration,
        frame_count=len(presentation),
        keyframes=tuple(Keyframe(pts, rank[pts]) for pts in sorted(set(keyframe_pts))),
        declared_frames=declared_frames,
        rotation=rotation,
    )


def _rotation(container, stream) -> int:
    """The display rotation of the first decodable frame (the container's display matrix)."""
    import av

    try:
        for frame in container.decode(stream):
            angle = int(round(frame.rotation or 0)) % 360
            break
        else:
            angle = 0
        container.seek(0, stream=stream)
    except av.error.FFmpegError:
        return 0
    return angle


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
