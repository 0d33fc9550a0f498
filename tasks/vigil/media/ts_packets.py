"""MPEG-TS packets read straight from the file, to tell lost data from a join or a pause.

DVR exports are often segment files concatenated byte-wise. At each join every packet identifier's
continuity counter restarts, and FFmpeg flags the video packet there as corrupt, as it does where
packets were lost. At a join, though, the packets run on intact, each with the sync byte and the
next counter, up to the first packet of the next segment's keyframe, where the counter restarts.
Where a recorder paused, the packets on either side of the gap in time are intact and in step.
Lost or damaged bytes break the sync or the counter somewhere else.
"""

from __future__ import annotations

from typing import BinaryIO

SYNC = 0x47
# (packet size, sync byte's offset in it): plain; M2TS (a 4-byte time code first); 16 bytes of FEC after
PACKET_LAYOUTS = ((188, 0), (192, 4), (192, 0), (204, 0))
PACKET_SIZES = frozenset(size for size, _ in PACKET_LAYOUTS)
MAX_READ = 8 << 20  # two video packets and what lies between them, at most


def between(source: BinaryIO, pid: int, start: int, end: int) -> str:
    """How the transport packets from byte ``start`` (a video packet's first) up to the one at
    ``end`` (a later video packet's first, a new payload) hold together: "intact" (a sync byte on
    every packet, the video ``pid``'s counter in step throughout), "restarted" (the same, but the
    counter restarts at ``end``: a segment glued there), "damaged" (anything else) or "unjudged"
    (more than ``MAX_READ`` apart). FFmpeg gives a packet's position as that of its first transport packet (in
    M2TS, of the time code before it)."""
    if not 0 <= start < end:
        return "damaged"
    if end - start > MAX_READ:
        return "unjudged"  # another camera's megabytes between: too far apart to read
    source.seek(start)
    data = source.read(end - start + 8)
    if len(data) < end - start + 8:
        return "damaged"
    for size, lead in PACKET_LAYOUTS:
        if (end - start) % size == 0:
            verdict = _counters(data[lead : end - start + lead + 4], size, pid)
            if verdict != "damaged":
                return verdict
    return "damaged"


def _counters(data: bytes, size: int, pid: int) -> str:
    offsets = range(0, len(data) - 3, size)
    if any(data[at] != SYNC for at in offsets):
        return "damaged"
    last = None
    for at in offsets:
        b1, b2, b3 = data[at + 1], data[at + 2], data[at + 3]
        if ((b1 & 0x1F) << 8 | b2) != pid:
            continue
        counter, has_payload = b3 & 0x0F, bool(b3 & 0x10)
        in_step = last is None or counter == ((last + 1) & 0x0F if has_payload else last) or counter == last
        if at + size >= len(data):  # the later packet's first: a new payload, never a repeated one
            if not b1 & 0x40:
                return "damaged"
            return "intact" if last is None or counter == (last + 1) & 0x0F else "restarted"
        if not in_step or b1 & 0x80:  # out of step, or the transport error bit
            return "damaged"
        last = counter
    return "damaged"
