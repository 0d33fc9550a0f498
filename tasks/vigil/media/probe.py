"""What a recording is: time base, first and last presentation time, frame count, keyframes.

The probe demuxes the video stream's packets (no decoding) once per recording. Time is always
``pts * time_base`` from the container, never ``index / fps``: surveillance recorders write
variable frame rates, and headers lie about frame counts.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from functools import cached_property, partial
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
from vigil.media.damage import Span, demuxer_errors, errors_in, inside
from vigil.media.packet_scan import Keyframe, PacketScan  # noqa: F401 (Keyframe re-exported)
from vigil.media.ps_packs import PackWatch
from vigil.media.timeline import Clock, Discontinuity, wrap_bits_for
from vigil.media.ts_packets import between

MAX_PIXELS = 4096 * 4096  # FFmpeg's own fuzzing cap; larger headers are refused before decoding
MAX_LISTED = 20  # clock breaks spelled out as warnings (a motion-triggered recorder jumps forward often)
MIN_GAP_S = 0.25  # a step in decode times shorter than this is jitter, not judged as a possible loss


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
    # Frames an MP4/MOV edit list leaves out (a file trimmed by stream copy keeps the pictures from
    # the keyframe before its cut): decoded as references, never shown by players, not on the timeline.
    hidden_frames: int = 0
    # Where the demuxer lost damaged bytes (damage.py): timeline [from, to) spans whose frames are not
    # analysed and whose empty bins are "undecodable".
    damaged: tuple[Span, ...] = ()
    # Frames whose packets carry no presentation time (packet_scan.UntimedFrames): not analysed; the
    # spans they may lie in, where a bin without a timed frame is "undecodable", not empty.
    untimed_frames: int = 0
    untimed: tuple[Span, ...] = ()
    # Times two frames share where frames are untimed: the parser gave a packet's time to a frame
    # that ended in it as well as to the one that began there, so neither is known to be the
    # picture at that time, and neither is analysed.
    ambiguous_times: tuple[int, ...] = ()
    # Every frame's timeline pts, sorted: for planning only (which bins hold a frame), never serialised.
    frame_pts: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @property
    def warnings(self) -> list[str]:
        """Facts about the recording an investigator must know before trusting its coverage."""
        notes = []
        if self.damaged:
            where = ", ".join(f"{float(self.seconds(lo)):.3f}–{float(self.seconds(hi)):.3f} s" for lo, hi in self.damaged[:MAX_LISTED])
            more = f" and {len(self.damaged) - MAX_LISTED} more" if len(self.damaged) > MAX_LISTED else ""
            notes.append(
                f"the container's data is damaged: the demuxer lost bytes at {len(self.damaged)} places ({where}{more}); "
                "frames there are not analysed and those times are undecodable, not empty"
            )  # fmt: skip
        if self.untimed_frames:
            notes.append(
                f"{self.untimed_frames} frames carry no presentation time (an MPEG program stream stamps only some "
                "frames; elsewhere a damaged header loses it): they cannot be placed in time and are not analysed, "
                "nor are any that follow the last timed frame; frame indices count the timed frames "
                "only, and times where untimed frames lie read undecodable, not empty; re-encode the recording with a "
                "timestamp on every frame (or re-export it from the recorder) to analyse them"
            )  # fmt: skip
        if self.hidden_frames:
            notes.append(
                f"an edit list hides {self.hidden_frames} frames (a trimmed file keeps them as references): they are "
                "decoded, not shown by players and not analysed; time 0 and frame index 0 are the first frame shown"
            )
        if self.declared_frames and self.frame_count + self.hidden_frames < self.declared_frames:
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
                + (", except where frames carry no time: there neither is known to be the picture at that time, "
                   "and none is analysed" if self.ambiguous_times else "")
            )  # fmt: skip
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

    def ambiguous_at(self, pts: int) -> bool:
        """Whether frames share timeline ``pts`` where it is not known which is the picture there."""
        return bool(self.ambiguous_times) and pts in self._ambiguous

    @cached_property
    def _ambiguous(self) -> frozenset[int]:
        return frozenset(self.ambiguous_times)

    def damaged_at(self, pts: int) -> bool:
        """Whether timeline ``pts`` lies where the demuxer lost data (its frame may be concealed)."""
        return bool(self.damaged) and inside(self.damaged, pts)

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
        values["damaged"] = tuple(tuple(span) for span in values.get("damaged", ()))
        values["untimed"] = tuple(tuple(span) for span in values.get("untimed", ()))
        values["ambiguous_times"] = tuple(values.get("ambiguous_times", ()))
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

    watch = PackWatch(source)  # program streams: their packs checked as the demuxer reads them
    with _open(watch, uri) as container:
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
        watch.keep_if(container_format)
        declared_frames = int(stream.frames or 0)
        rotation = first_frame_rotation(container, stream)
        synthesized = frame_rate is not None and has_no_timestamps(container, stream)
        tb = 1 / as_fraction(frame_rate) if synthesized else Fraction(stream.time_base)
        stream_id, pid = int(stream.index), int(stream.id)
        clock = Clock(tb, 0 if synthesized else wrap_bits_for(container_format))
        scan = PacketScan(clock.reorder, bytes_tell="mpegts" in container_format.split(","), min_gap=int(MIN_GAP_S / tb),
                          clock_jump=clock.forward_jump)  # fmt: skip
        with demuxer_errors() as logs:
            _scan(container, stream, scan, clock, synthesized, logs, uri, watch)

    if not scan.presentation:
        if frame_rate is None:
            raise RecordingError(
                uri, "video stream holds no frames with timestamps (a raw elementary stream?): give its frame rate "
                "with the frame_rate parameter (vigil process --frame-rate N) to synthesise times at N fps",
            )  # fmt: skip
        raise RecordingError(uri, "video stream holds no frames")
    judge = partial(between, source, pid) if scan.lost.bytes_tell else None  # ts_packets.py
    timeline = scan.timeline(uri, clock, judge)
    if not timeline["keyframes"]:
        raise RecordingError(uri, "video stream has no keyframe to start decoding from")
    return RecordingProbe(
        **timeline, container_format=container_format, codec=codec, width=width, height=height,
        time_base=f"{tb.numerator}/{tb.denominator}", declared_frames=declared_frames, rotation=rotation,
        wrap_bits=clock.period.bit_length() - 1 if clock.period else 0, stream_index=stream_index,
        container_stream=stream_id, video_streams=len(streams), synthesized_fps=float(frame_rate) if synthesized else 0.0,
    )  # fmt: skip


def _scan(container, stream, scan: PacketScan, clock: Clock, synthesized: bool, logs: list, uri: str,
          watch: PackWatch) -> None:  # fmt: skip
    """Feed every packet of ``stream`` to ``scan`` in decode order, with whether the demuxer logged an
    error on its way to it, or skipped bytes where a program stream's packs break (it lost damaged bytes)."""
    import av

    last_pos = -1
    try:
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None and packet.dts is None:
                continue  # the flush packet
            if packet.is_discard and not synthesized:
                scan.hide(packet, clock)  # outside the edit list: FFmpeg decodes it but drops its frame
                continue
            placed = scan.decoded if synthesized else clock.place(packet.pts, packet.dts)
            lost = errors_in(logs)
            if watch.active and packet.pos is not None and packet.pos > last_pos:
                lost, last_pos = lost or watch.lost_between(last_pos, packet.pos), packet.pos
            scan.add(placed, packet, clock, synthesized, lost_before=lost)
    except av.error.FFmpegError as exc:
        if not scan.presentation:
            raise RecordingError(uri, f"cannot read packets ({_reason(exc)})") from exc
        # A truncated tail: keep what was readable; the shard plan covers only that.
    if watch.lost_after(last_pos):
        scan.lost.at_end()  # the last packets' data ran into lost bytes


def _open(source: BinaryIO, uri: str):
    import av

    try:
        return av.open(source, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise RecordingError(uri, unreadable_reason(uri, exc, source)) from exc
