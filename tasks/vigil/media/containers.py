"""Container-level facts FFmpeg leaves to the caller: which streams are video, how to get back to
the start of a file without an index, where an MP4's index lies, which proprietary recorder
formats it cannot read, and how a stored frame is turned to display orientation."""

from __future__ import annotations

import io
from typing import BinaryIO

# Containers without a seek index: shards seek to a keyframe packet's byte position instead.
BYTE_SEEK_FORMATS = {"mpegts", "mpeg", "mpegvideo", "h264", "hevc", "m4v", "mpegtsraw"}


def seeks_by_byte(format_name: str) -> bool:
    """Whether a container (FFmpeg's format name, possibly a comma list) is one of those."""
    return bool(set(format_name.split(",")) & BYTE_SEEK_FORMATS)


# What FFmpeg reads of a file's start to open it: format probing (2 KiB) and an MP4's first boxes.
OPEN_READ = 4096
# The largest index taken whole (about 0.3 MB an hour at 25 frames/s: 64 MiB is over a week); a
# larger one, or a box that claims to be, is left to FFmpeg to read as it goes.
MAX_INDEX_BYTES = 64 << 20
# Top-level boxes of ISO base media files (MP4, MOV, 3GP): a file that starts with another is not walked.
_FIRST_BOXES = {b"ftyp", b"wide", b"free", b"skip", b"mdat", b"moov", b"pnot", b"uuid", b"styp", b"junk"}


def mp4_index_bytes(source: BinaryIO, limit: int = 64) -> tuple[int, int] | None:
    """``(start, end)`` of an MP4/MOV file's index (its top-level ``moov`` box), found by walking
    the top-level box headers (a few bytes each); None for other files, or where the boxes do not
    add up. The read position is left where it was."""
    for kind, pos, end in _top_level_boxes(source, limit):
        if kind == b"moov":
            return (pos, end) if end - pos <= MAX_INDEX_BYTES else None
    return None


def _top_level_boxes(source: BinaryIO, limit: int):
    """``(kind, start, end)`` of an MP4/MOV file's top-level boxes, up to ``limit`` of them or the
    first that does not add up; none for a file that does not start like one."""
    start = source.tell()
    try:
        size = source.seek(0, io.SEEK_END)
        pos = 0
        for number in range(limit):
            if pos + 8 > size:
                return
            source.seek(pos)
            header = _read(source, 8)
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if len(header) < 8 or (number == 0 and kind not in _FIRST_BOXES) or not kind.isascii():
                return
            if length == 1:  # a 64-bit size follows
                length = int.from_bytes(_read(source, 8).rjust(8, b"\0"), "big")
            elif length == 0:  # to the end of the file
                length = size - pos
            if length < 8:
                return
            yield kind, pos, min(pos + length, size)
            pos += length
    finally:
        source.seek(start)


def _read(source: BinaryIO, count: int) -> bytes:
    data = b""
    while len(data) < count and (chunk := source.read(count - len(data))):
        data += chunk
    return data


def ask_for_open_bytes(source: BinaryIO, index_bytes: tuple[int, int] | None) -> None:
    """Tell a remote reader (one with ``fetch_ranges``) the bytes FFmpeg is about to open the
    container with: the file's start and an MP4's index, each then fetched in one request of its
    exact size instead of small reads that grow (and overshoot) as FFmpeg works through them."""
    fetch_ranges = getattr(source, "fetch_ranges", None)
    if fetch_ranges is not None and index_bytes and 0 <= index_bytes[0] < index_bytes[1] <= index_bytes[0] + MAX_INDEX_BYTES:
        fetch_ranges([(0, OPEN_READ), tuple(index_bytes)])


def rewind(container, stream) -> None:
    """Back to the first packet. By byte where the container has no index: a timestamp seek to 0 in
    an MPEG-TS whose clock wraps or resets lands wherever pts 0 happens to be."""
    if seeks_by_byte(container.format.name):
        container.seek(0, unsupported_byte_offset=True)
    elif container.format.name.startswith("mov"):
        # Before the first sample, not to time 0: an edit list can hide a group's keyframe before
        # time 0, and a seek to 0 then lands on a later keyframe (measured with open groups).
        container.seek(-(1 << 62), stream=stream, backward=True)
    else:
        container.seek(0, stream=stream)


def first_frame_rotation(container, stream) -> int:
    """The display rotation of the first decodable frame (the container's display matrix)."""
    import av

    try:
        for frame in container.decode(stream):
            angle = display_rotation(frame)
            break
        else:
            angle = 0
        rewind(container, stream)
    except av.error.FFmpegError:
        return 0
    return angle


def video_streams(container) -> list:
    """The container's video streams, attached pictures (cover art, thumbnails) excluded."""
    streams = []
    for stream in container.streams.video:
        disposition = getattr(stream, "disposition", None)
        if disposition is not None and "attached_pic" in str(disposition).lower():
            continue
        streams.append(stream)
    return streams


def has_no_timestamps(container, stream, look: int = 64) -> bool:
    """Whether the stream's first packets carry no timestamps at all (raw elementary streams)."""
    import av

    timed = False
    try:
        for count, packet in enumerate(container.demux(stream)):
            if packet.pts is not None or packet.dts is not None:
                timed = True
                break
            if count >= look:
                break
        rewind(container, stream)
    except av.error.FFmpegError:
        pass
    return not timed


# Recorder containers FFmpeg does not (fully) parse, by extension. FFmpeg's ``dhav`` demuxer reads
# Dahua DHAV .dav files; other vendors' .dav and encrypted or older variants it cannot.
PROPRIETARY = {
    ".dav": "DVR .dav (FFmpeg reads Dahua DHAV .dav files; this one is another vendor's, an encrypted or older variant, or damaged)",
    ".h64": "DVR .h64", ".sec": "Samsung SEC", ".g64": "Geovision G64", ".irf": "IRF", ".exe": "self-playing DVR export",
    ".mfs": "Hikvision MFS", ".bvr": "BVR", ".ifv": "IFV", ".dvr": "DVR .dvr",
}  # fmt: skip


def unreadable_reason(uri: str, exc: BaseException, source: BinaryIO | None = None) -> str:
    """Why FFmpeg could not open a file, naming a proprietary recorder format where it is one, and
    an MP4 cut short before its index was written (given the file, ``source``)."""
    from pathlib import PurePosixPath

    suffix = PurePosixPath(uri.split("?")[0]).suffix.lower()
    if suffix in PROPRIETARY:
        return (
            f"FFmpeg cannot read this {PROPRIETARY[suffix]} file: a recorder's proprietary container. Export the "
            "footage from the vendor's player (or the recorder itself) to MP4 or MPEG-TS and analyse that export, "
            f"keeping this original as it is ({reason(exc)})"
        )
    if source is not None and _mp4_without_index(source):
        return (
            "an MP4/MOV file without its index (no moov box): it was cut short before the recorder wrote the index "
            "(power lost while recording, or an interrupted copy), so its frames cannot be placed in time. Keep this "
            "original as it is; a repair tool given a healthy file from the same camera (e.g. untrunc) can rebuild "
            f"the index in a working copy, which can then be analysed ({reason(exc)})"
        )
    return f"not a readable media container ({reason(exc)})"


def _mp4_without_index(source: BinaryIO) -> bool:
    """Whether ``source`` starts like an MP4/MOV file but has no top-level ``moov`` box."""
    try:
        kinds = [kind for kind, _, _ in _top_level_boxes(source, limit=1 << 16)]
    except OSError:
        return False
    return bool(kinds) and b"moov" not in kinds


def display_rotation(frame) -> int:
    """The counter-clockwise quarter turn (0, 90, 180, 270) a player applies to show ``frame``
    upright: its display matrix (phone recorders store frames sideways and set it)."""
    return (int(round((frame.rotation or 0) / 90)) * 90) % 360


def upright(image, angle: int):
    """``image`` (rows, columns, channels) turned ``angle`` degrees counter-clockwise, contiguous."""
    import numpy as np

    return np.ascontiguousarray(np.rot90(image, angle // 90)) if angle else image


def reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
