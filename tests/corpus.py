"""Broken and unusual recordings, generated from the sample footage (nothing is downloaded)."""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import numpy as np


def truncated(footage: Path, target: Path) -> Path:
    """The first half of the file's bytes, as if a copy was interrupted."""
    data = footage.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def corrupted_middle(footage: Path, target: Path, length: int = 150_000, seed: int = 7) -> Path:
    """Random bytes over ``length`` bytes in the middle of the media data (the index is intact)."""
    data = bytearray(footage.read_bytes())
    rng = random.Random(seed)
    middle = len(data) // 2
    data[middle : middle + length] = bytes(rng.randrange(256) for _ in range(length))
    target.write_bytes(bytes(data))
    return target


def b_frames_odd_gop(footage: Path, target: Path, open_gop: bool = False) -> Path:
    """20 s at 10 fps with B-frames (reordered) and a keyframe every 17 frames, off any sampling
    grid; ``open_gop``: groups whose leading pictures refer back past their keyframe."""
    options = {"g": "17", "keyint_min": "17", "bf": "2"} | ({"x264-params": "open-gop=1"} if open_gop else {})
    return encode(_frames(footage, 200), [i / 10 for i in range(200)], target, options=options)


def b_pyramid(footage: Path, target: Path, open_gop: bool = False) -> Path:
    """20 s at 10 fps with three B-frames between references, the middle one a reference (x264's
    B-pyramid), a keyframe every 23 frames; ``open_gop``: leading pictures refer back past it."""
    params = "b-pyramid=normal" + (":open-gop=1" if open_gop else "")
    options = {"g": "23", "keyint_min": "23", "bf": "3", "x264-params": params}
    return encode(_frames(footage, 200), [i / 10 for i in range(200)], target, options=options)


def all_intra(footage: Path, target: Path) -> Path:
    """20 s at 10 fps, every picture a keyframe (as MJPEG cameras and some DVRs record)."""
    return encode(_frames(footage, 200), [i / 10 for i in range(200)], target, options={"g": "1", "bf": "0"})


def _frames(footage: Path, count: int):
    import av

    with av.open(str(footage)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= count:
                return
            yield frame.to_ndarray(format="rgb24")


def encode(frames, times_s, target: Path, rotation: int | None = None, size: tuple[int, int] | None = None,
           options: dict | None = None, rate: int = 10) -> Path:  # fmt: skip
    """H.264 in MP4 with the given presentation times (seconds): variable frame rate is allowed.
    ``options`` are libx264's (default: a keyframe every 10 frames, no B-frames); ``rate``: the
    nominal frame rate the encoder is told (with B-frames, the times must keep to it)."""
    import av

    frames = list(frames)
    height, width = size or frames[0].shape[:2]
    with av.open(str(target), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.options = options or {"g": "10", "bf": "0"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for image, t in zip(frames, times_s):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return target


def variable_frame_rate(footage: Path, target: Path) -> Path:
    """40 real frames: 10 fps for 2 s, a 5-second recorder gap, then 4 fps for 5 s."""
    times = [i * 0.1 for i in range(20)] + [7.0 + i * 0.25 for i in range(20)]
    return encode(_frames(footage, 40), times, target)


def rotated(footage: Path, target: Path) -> Path:
    """20 real frames with a 90° display rotation in the container."""
    return encode(_frames(footage, 20), [i * 0.1 for i in range(20)], target, rotation=90)


def huge_dimensions(target: Path) -> Path:
    """One gray frame of 4128 × 4128 pixels: more than vigil accepts (4096 × 4096)."""
    image = np.full((4128, 4128, 3), 128, np.uint8)
    return encode([image], [0.0], target)


# ----------------------------------------------------------------- recorder exports (issue #11)


def remux(source: Path, target: Path, format: str = "mpegts", offset_s: float = 0, start_s: float = 0,
          end_s: float | None = None, streams_before: int = 0) -> Path:  # fmt: skip
    """``source``'s video packets from ``start_s`` to ``end_s`` copied as they are (no re-encoding)
    into ``format``, with ``offset_s`` added to every timestamp (a recorder clock starting late)."""
    import av

    with av.open(str(source)) as container, av.open(str(target), "w", format=format) as output:
        stream = container.streams.video[0]
        out_stream = output.add_stream_from_template(stream)
        tb = stream.time_base
        shift = int(round(offset_s / tb))
        for packet in container.demux(stream):
            if packet.dts is None:
                continue
            if packet.pts * tb < start_s or (end_s is not None and packet.pts * tb >= end_s):
                if end_s is not None and packet.dts * tb >= end_s + 1:
                    break
                continue
            packet.pts += shift
            packet.dts += shift
            packet.stream = out_stream
            output.mux(packet)
    return target


def glued_segments(footage: Path, target: Path) -> Path:
    """Two MPEG-TS segment files concatenated byte-wise, as DVR exports are: the first 60 s with a
    clock starting 10 h in, then 79.4 s whose clock restarts at 0 (a backward jump)."""
    first = remux(footage, target.with_suffix(".a.ts"), offset_s=36000, end_s=60)
    second = remux(footage, target.with_suffix(".b.ts"), start_s=60, offset_s=-60)
    target.write_bytes(first.read_bytes() + second.read_bytes())
    return target


def wrapping_clock(footage: Path, target: Path, before_wrap_s: float = 30) -> Path:
    """MPEG-TS whose 33-bit 90 kHz clock wraps ``before_wrap_s`` into the footage."""
    return remux(footage, target, offset_s=2**33 / 90000 - before_wrap_s)


def forward_jump(footage: Path, target: Path, gap_s: float = 100) -> Path:
    """MPEG-TS of the first 30 s, then (clock jumping ``gap_s`` ahead) the next 30 s."""
    first = remux(footage, target.with_suffix(".a.ts"), offset_s=600, end_s=30)
    second = remux(footage, target.with_suffix(".b.ts"), offset_s=600 + gap_s, start_s=30, end_s=60)
    target.write_bytes(first.read_bytes() + second.read_bytes())
    return target


def zeroed_media(footage: Path, target: Path, length: int = 2_000_000) -> Path:
    """``length`` bytes of an MP4's media data zeroed (a damaged copy); the index still lists every frame."""
    data = bytearray(footage.read_bytes())
    start = data.find(b"mdat") + 4 + 16
    data[start : start + length] = bytes(length)
    target.write_bytes(bytes(data))
    return target


def raw_annex_b(footage: Path, target: Path, seconds: float = 20) -> Path:
    """The first ``seconds`` of the footage as a raw Annex-B H.264 stream: no container, no timestamps."""
    return remux(footage, target, format="h264", end_s=seconds)


def far_apart_frames(target: Path, apart_ms: int = 10**14, size: int = 16) -> Path:
    """A tiny MKV of two frames ``apart_ms`` apart: a clock that would plan 10^11 sampling bins."""
    import av

    image = np.full((size, size, 3), 90, np.uint8)
    with av.open(str(target), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.options = {"g": "1", "bf": "0"}
        for pts in (0, apart_ms):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return target


def growing_resolution(footage: Path, target: Path, huge: int = 4128) -> Path:
    """MPEG-TS whose header (first segment) says 64×64 and whose stream switches to huge × huge
    frames after 2 s: the size cap must hold for decoded frames, not only for the header."""
    small = [frame[:64, :64] for frame in _frames(footage, 20)]
    first = encode(small, [i / 10 for i in range(20)], target.with_suffix(".a.mp4"))
    second = encode([np.full((huge, huge, 3), 128, np.uint8)], [0.0], target.with_suffix(".b.mp4"))
    a = remux(first, target.with_suffix(".a.ts"))
    b = remux(second, target.with_suffix(".b.ts"), offset_s=2.0)
    target.write_bytes(a.read_bytes() + b.read_bytes())
    return target


def animated_gif(footage: Path, target: Path, frames: int = 30) -> Path:
    """An animated GIF of the footage at 10 fps, 192 × 108 pixels."""
    import av

    with av.open(str(target), "w", format="gif") as container:
        stream = container.add_stream("gif", rate=10)
        stream.width, stream.height, stream.pix_fmt = 192, 108, "rgb8"
        for i, image in enumerate(_frames(footage, frames)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(192, 108, "rgb8")
            frame.pts, frame.time_base = i * 10, Fraction(1, 100)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return target


def stored_sideways(footage: Path, target: Path, degrees: int, seconds: int = 40) -> Path:
    """Phone-style footage: every other frame of the first ``seconds`` (5 fps), stored turned
    ``degrees`` clockwise with a display matrix that turns it back (``degrees`` counter-clockwise),
    so players show it upright. ``degrees`` 0 gives the upright reference, encoded the same way."""
    frames = [np.rot90(image, -degrees // 90) for i, image in enumerate(_frames(footage, seconds * 10)) if i % 2 == 0]
    return encode(frames, [i / 5 for i in range(len(frames))], target, rotation=degrees or None)


def two_cameras(footage: Path, target: Path, seconds: int = 20) -> Path:
    """A multi-channel DVR export: an MKV whose first video stream is black (a dead channel) and
    whose second is the camera (``seconds`` of the footage at 10 fps)."""
    import av

    camera = list(_frames(footage, seconds * 10))
    black = np.zeros((144, 256, 3), np.uint8)
    with av.open(str(target), "w", format="matroska") as container:
        streams = []
        for width, height in ((256, 144), (camera[0].shape[1], camera[0].shape[0])):
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.options = {"g": "10", "bf": "0"}
            streams.append(stream)
        for i, image in enumerate(camera):
            for stream, picture in zip(streams, (black, image)):
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, 10)
                for packet in stream.encode(frame):
                    container.mux(packet)
        for stream in streams:
            for packet in stream.encode(None):
                container.mux(packet)
    return target


def recorder_gap(footage: Path, target: Path, gap_s: float, seconds: float = 6) -> Path:
    """Matroska (1 ms clock, no wrap) of the footage's first ``seconds``, then, the recorder's clock
    jumping ``gap_s`` ahead, the next ``seconds``: a motion recorder idle for hours. Packets are
    copied as they are (no re-encoding)."""
    import av

    with av.open(str(footage)) as container, av.open(str(target), "w", format="matroska") as output:
        stream = container.streams.video[0]
        out_stream = output.add_stream_from_template(stream)
        tb = stream.time_base
        shift = int(round(gap_s / tb))
        for packet in container.demux(stream):
            if packet.dts is None:
                continue
            if packet.dts * tb >= 2 * seconds + 1:
                break
            if packet.pts * tb >= 2 * seconds:
                continue
            if packet.pts * tb >= seconds:
                packet.pts += shift
                packet.dts += shift
            packet.stream = out_stream
            output.mux(packet)
    return target


def trimmed_by_stream_copy(source: Path, target: Path, cut_s: float) -> Path:
    """``source`` cut at ``cut_s`` without re-encoding, as ``ffmpeg -ss T -i in -c copy out.mp4``
    and phone or NLE trims do: copying starts at the keyframe before the cut, and the MP4 gets an
    edit list that hides the pictures before it (FFmpeg flags their packets "discard")."""
    import av

    with av.open(str(source)) as container, av.open(str(target), "w") as output:
        stream = container.streams.video[0]
        out_stream = output.add_stream_from_template(stream)
        cut = int(round(cut_s / stream.time_base))
        packets = [p for p in container.demux(stream) if p.dts is not None]
        start = max(i for i, p in enumerate(packets) if p.is_keyframe and p.pts <= cut)
        for packet in packets[start:]:
            packet.pts -= cut
            packet.dts -= cut
            packet.stream = out_stream
            output.mux(packet)
    return target


def h264_in_avi(footage: Path, target: Path) -> Path:
    """20 s at 10 fps of H.264 with B-frames in AVI, which stores no presentation times: a reader
    gets the decode order as timestamps (what DVR exports of such streams look like)."""
    import av

    with av.open(str(target), "w", format="avi") as output:
        stream = output.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 768, 432, "yuv420p"
        stream.codec_context.options = {"g": "17", "keyint_min": "17", "bf": "2"}
        for image in _frames(footage, 200):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return target


def with_audio(source: Path, target: Path, format: str = "mpegts", seconds: float = 20, gap_s: float = 0) -> Path:
    """``source``'s first ``seconds`` of video (packets copied) with a tone encoded beside it (MP2,
    as DVRs carry), interleaved; ``gap_s`` > 0: both pause that long from the first keyframe past
    halfway, in one file (a motion recorder idle; the packet counters run on)."""
    import av

    rate, samples = 48000, 1152
    with av.open(str(source)) as container, av.open(str(target), "w", format=format) as output:
        stream = container.streams.video[0]
        out_stream = output.add_stream_from_template(stream)
        audio = output.add_stream("mp2", rate=rate, layout="mono")
        tb, half = stream.time_base, seconds / 2
        shift = int(round(gap_s / tb))
        sent = 0  # audio samples encoded, on the source's clock (before the pause is added)
        paused = False

        def audio_until(t: float):
            nonlocal sent
            while sent / rate < t:
                tone = (np.sin(np.arange(sent, sent + samples) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate = rate
                frame.pts = sent + (int(gap_s * rate) if paused else 0)
                frame.time_base = Fraction(1, rate)
                sent += samples
                yield from audio.encode(frame)

        for packet in container.demux(stream):
            if packet.dts is None:
                continue
            if packet.dts * tb >= seconds + 1:
                break
            if packet.pts * tb >= seconds:
                continue
            paused = paused or (packet.is_keyframe and packet.pts * tb >= half)
            for sound in audio_until(float(packet.dts * tb)):
                output.mux(sound)
            if paused:
                packet.pts += shift
                packet.dts += shift
            packet.stream = out_stream
            output.mux(packet)
        for sound in audio.encode(None):
            output.mux(sound)
    return target


def program_stream(source: Path, target: Path) -> Path:
    """``source``'s video copied into an MPEG program stream, as FFmpeg's muxer (and DVD-style
    recorders) write it: a PES packet's timestamp belongs to the first frame that starts in it, so
    small frames that share one carry none. By way of MPEG-TS, for Annex-B H.264."""
    return remux(remux(source, target.with_suffix(".ts"), format="mpegts"), target, format="mpeg")
