"""What a recording is: time base, first and last presentation time, frame count, keyframes.

The probe demuxes the video stream's packets (no decoding) once per recording. Time is always
``pts * time_base`` from the container, never ``index / fps``: surveillance recorders write
variable frame rates, and headers lie about frame counts.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from functools import cached_property
from fractions import Fraction
from typing import BinaryIO

from vigil.config import as_fraction
from vigil.errors import RecordingError
from vigil.media.containers import (  # noqa: F401 (re-exported: frames and callers take them from here too)
    display_rotation,
    first_frame_rotation,
    has_no_timestamps,
    reason as _reason,
    rewind,
    seeks_by_byte,
    unreadable_reason,
    upright,
    video_streams,
)
from vigil.media.timeline import Clock, Discontinuity, wrap_bits_for

MAX_PIXELS = 4096 * 4096  # FFmpeg's own fuzzing cap; larger headers are refused before decoding
# A recording whose clock spans more than this per frame is not footage but a broken (or hostile)
# clock: two frames 10^14 ms apart would otherwise plan 10^11 sampling bins.
MAX_SECONDS_PER_FRAME = 3600
MAX_DURATION_S = 366 * 24 * 3600
MAX_LISTED = 20  # clock breaks spelled out as warnings (a motion-triggered recorder jumps forward often)


@dataclass(frozen=True)
class Keyframe:
    pts: int  # on the recording timeline, in the stream's time base
    frame_index: int  # index of this frame in presentation order, from 0
    pos: int = -1  # byte offset of its packet in the file (-1: the container does not say)
    offset: int = 0  # timeline minus raw clock of its segment (what a shard's Clock starts from)
    step: int = 0  # the clock's last frame step there (where a reset after it is placed)


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
    rotation: int = 0  # display rotation (counter-clockwise degrees, 0/90/180/270), applied before analysis
    discontinuities: tuple[Discontinuity, ...] = ()  # where the raw clock breaks (timeline.py)
    wrap_bits: int = 0  # 33 for MPEG-TS/PS clocks, which wrap
    stream_index: int = 0  # which video stream (attached pictures excluded), from 0
    video_streams: int = 1  # how many the container holds: each is analysed as a recording of its own
    container_stream: int = 0  # that stream's index among all the container's streams
    synthesized_fps: float = 0.0  # >0: the stream has no timestamps; times are frame n / this rate
    # An MP4/MOV's index (its moov box), (start, end) in the file, and the SHA-256 of its copy in
    # the output store (store/index_copy.py): shards and pictures read the copy, or fetch the index
    # in one request (containers.ask_for_open_bytes). Set by planning, which walks the file's boxes.
    index_bytes: tuple[int, int] | None = None
    index_sha256: str = ""
    repeated_times: int = 0  # frames that share their presentation time with an earlier one
    # Every frame's timeline pts, sorted: for planning only (which bins hold a frame), never serialised.
    frame_pts: tuple[int, ...] = field(default=(), compare=False, repr=False)

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
            notes.append(
                f"display rotation applied: frames stored {self.rotation}° off upright were turned {self.rotation}° "
                "counter-clockwise before analysis, as players show them; coordinates are in displayed-frame pixels "
                f"({self.display_size[0]}×{self.display_size[1]})"
            )
        if self.repeated_times:
            notes.append(
                f"{self.repeated_times} frames share their presentation time with another frame (a recorder "
                "or muxer fault, or an edited file): at each such time only the first frame shown is analysed"
            )
        if self.synthesized_fps:
            notes.append(
                f"the stream carries no timestamps: times are synthesised at {self.synthesized_fps:g} fps "
                "(the frame_rate parameter), frame n at n / rate; they are only as right as that rate"
            )
        notes.extend(d.describe() for d in self.discontinuities[:MAX_LISTED])
        if len(self.discontinuities) > MAX_LISTED:
            kinds = sorted({d.kind for d in self.discontinuities[MAX_LISTED:]})
            notes.append(f"and {len(self.discontinuities) - MAX_LISTED} more clock breaks ({', '.join(kinds)}): "
                         "all are listed in the manifest's probe.discontinuities")  # fmt: skip
        return notes

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height of frames as displayed (and analysed): turned by the display rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    @property
    def byte_seek(self) -> bool:
        """Shards seek by byte position (the container has no index, or its clock breaks)."""
        return seeks_by_byte(self.container_format)

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

    @cached_property
    def keyframe_pts(self) -> list[int]:
        """The keyframes' pts, once per probe (planning looks them up for every shard)."""
        return [k.pts for k in self.keyframes]

    def keyframe_at_or_before(self, seconds: Fraction) -> Keyframe:
        """The keyframe to seek to so that decoding forward reaches ``seconds``."""
        i = bisect.bisect_right(self.keyframe_pts, self.start_pts + seconds / self.tb) - 1
        return self.keyframes[max(i, 0)]

    def keyframe_at_or_after(self, seconds: Fraction) -> Keyframe | None:
        """The first keyframe at or after ``seconds``; None past the last one."""
        i = bisect.bisect_left(self.keyframe_pts, self.start_pts + seconds / self.tb)
        return self.keyframes[i] if i < len(self.keyframes) else None

    def to_dict(self) -> dict:
        values = asdict(self)
        values.pop("frame_pts")
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "RecordingProbe":
        values = dict(values)
        values.pop("frame_pts", None)
        values["keyframes"] = tuple(Keyframe(**k) if isinstance(k, dict) else Keyframe(*k) for k in values["keyframes"])
        values["index_bytes"] = tuple(values["index_bytes"]) if values.get("index_bytes") else None
        values["discontinuities"] = tuple(
            Discontinuity(**d) if isinstance(d, dict) else d for d in values.get("discontinuities", ())
        )
        return cls(**values)


def probe(source: BinaryIO, uri: str, frame_rate: float | None = None, stream_index: int = 0) -> RecordingProbe:
    """Demux every packet of one video stream of ``source`` (no decoding), in decode order, and
    describe it on one monotonic recording timeline (see ``timeline.py``).

    ``stream_index`` counts video streams (attached pictures excluded), from 0. ``frame_rate``
    synthesises times for a stream that has none (raw Annex-B H.264/H.265): frame ``n`` in decode
    order is at ``n / frame_rate`` s. Raises RecordingError (not retryable) naming ``uri`` for
    anything that is not a readable video: no video stream, no timestamps (without ``frame_rate``),
    absurd dimensions or duration, a container FFmpeg cannot parse.
    """
    import av

    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise RecordingError(uri, unreadable_reason(uri, exc)) from exc
    with container:
        streams = video_streams(container)
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise RecordingError(uri, f"no video stream (streams found: {', '.join(kinds)})")
        if stream_index >= len(streams):
            raise RecordingError(uri, f"has {len(streams)} video streams, no video stream {stream_index}")
        stream = streams[stream_index]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise RecordingError(uri, f"video stream declares no frame size ({width}×{height})")
        if width * height > MAX_PIXELS:
            raise RecordingError(uri, f"declared frame size {width}×{height} exceeds the 4096×4096 pixel limit")
        if stream.time_base is None and frame_rate is None:
            raise RecordingError(uri, "video stream has no time base")
        # Read everything needed from the stream now: its fields are invalid once it is closed.
        container_format, codec = container.format.name, ctx.name
        declared_frames = int(stream.frames or 0)
        rotation = first_frame_rotation(container, stream)
        synthesized = frame_rate is not None and has_no_timestamps(container, stream)
        tb = 1 / as_fraction(frame_rate) if synthesized else Fraction(stream.time_base)
        clock = Clock(tb, 0 if synthesized else wrap_bits_for(container_format))
        scan = _Scan()
        try:
            for packet in container.demux(stream):
                if packet.size == 0 and packet.pts is None and packet.dts is None:
                    continue  # the flush packet
                count = scan.decoded
                placed = count if synthesized else clock.place(packet.pts, packet.dts)
                scan.add(placed, packet, clock, synthesized)
        except av.error.FFmpegError as exc:
            if not scan.presentation:
                raise RecordingError(uri, f"cannot read packets ({_reason(exc)})") from exc
            # A truncated tail: keep what was readable; the shard plan covers only that.
        stream_id = int(stream.index)

    if not scan.presentation:
        if frame_rate is None:
            raise RecordingError(
                uri, "video stream holds no frames with timestamps (a raw elementary stream?): give its frame rate "
                "with the frame_rate parameter (vigil process --frame-rate N) to synthesise times at N fps",
            )  # fmt: skip
        raise RecordingError(uri, "video stream holds no frames")
    if not scan.keyframes:
        raise RecordingError(uri, "video stream has no keyframe to start decoding from")
    return scan.result(
        uri, clock, container_format=container_format, codec=codec, width=width, height=height,
        time_base=f"{tb.numerator}/{tb.denominator}", declared_frames=declared_frames, rotation=rotation,
        wrap_bits=clock.period.bit_length() - 1 if clock.period else 0, stream_index=stream_index,
        container_stream=stream_id, video_streams=len(streams), synthesized_fps=float(frame_rate) if synthesized else 0.0,
    )  # fmt: skip


class _Scan:
    """What the probe collects while demuxing, in decode order."""

    def __init__(self) -> None:
        self.decoded = 0  # packets seen (the decode-order index of the next one)
        self.presentation: list[int] = []
        self.keyframes: list[tuple[int, int, int, int]] = []  # (timeline pts, pos, offset, step)
        self.events: list[tuple[str, int, int, int]] = []  # (kind, raw step, timeline tick, pos)
        self.latest: int | None = None
        self.last_duration = 0
        self._events_seen = 0

    def add(self, placed: int | None, packet, clock: Clock, synthesized: bool) -> None:
        self.decoded += 1
        pos = packet.pos if packet.pos is not None else -1
        if len(clock.events) > self._events_seen:
            for kind, delta, _ in clock.events[self._events_seen :]:
                tick = placed if placed is not None else (clock.previous[0] + clock.offset)
                self.events.append((kind, delta, tick, pos))
            self._events_seen = len(clock.events)
        if placed is None:
            return  # a packet the muxer left without a presentation time
        self.presentation.append(placed)
        if self.latest is None or placed > self.latest:
            self.latest, self.last_duration = placed, (1 if synthesized else packet.duration or 0)
        if packet.is_keyframe:
            self.keyframes.append((placed, pos, clock.offset, clock.step))

    def result(self, uri: str, clock: Clock, **fields) -> RecordingProbe:
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
        keyframes.sort(key=lambda k: k.pts)
        discontinuities = tuple(
            Discontinuity(kind, round(float((tick - start) * tb), 6), pos, round(float(delta * tb), 6))
            for kind, delta, tick, pos in self.events
        )
        return RecordingProbe(start_pts=start, end_pts=end, frame_count=len(presentation), keyframes=tuple(keyframes),
                              discontinuities=discontinuities, frame_pts=tuple(presentation),
                              repeated_times=len(presentation) - len(rank), **fields)  # fmt: skip
