"""Which packets of a shard are worth decoding, so that a shard decodes as little as it can
while sampling exactly the frames that decoding every packet would.

Two kinds of packets are left undecoded:
- ``DecodePlan``: the rest of a group of pictures once the next keyframe lies at or before the
  earliest frame still needed (streams of closed groups);
- ``SkippedPictures``: a picture nothing refers to (``media.nal.Disposable``) that cannot be the
  first frame of its sampling bin: the bin is closed, or an earlier picture of it has been sent
  to the decoder. Most B-frames are such pictures: with keyframes off the sampling grid they are
  most of what a shard decodes to reach the first frame of the next bin.

A skipped picture never comes out of the decoder, so the shard counts it where it belongs in
presentation order (``between``). FFmpeg's H.264 decoder holds back ``reorder_depth`` pictures
and drops a picture that arrives after a later one has come out; where the stream does not state
its depth (``max_num_reorder_frames``) it guesses from the pictures it has seen, and a decoder not
shown some of them may guess lower. So before a picture is sent, the shard checks that no more
pictures later than it have been sent than the decoder holds back (then none of them can be out
yet); and every picture sent must come out, in order. Where either fails with pictures skipped,
the shard is decoded again without skipping (``SkipUnsafe``); where nothing was skipped yet,
skipping stops for that shard.
"""

from __future__ import annotations

import bisect
import heapq
import math
from fractions import Fraction
from typing import Sequence

from vigil.media.nal import Disposable
from vigil.media.sharding import sample_bin


class SkipUnsafe(Exception):
    """With pictures skipped, a picture sent to the decoder did not come out, or is about to be
    sent after more later pictures than the decoder holds back: the shard is decoded again
    without skipping, so no sampled frame or index depends on the skips."""


class SkippedPictures:
    """Non-reference pictures left undecoded, and the check that every decoded one came out.

    ``skips`` is asked for each packet the ``DecodePlan`` wants decoded; ``came_out`` for each
    frame the decoder gives back, before that frame is used; ``between`` counts the skipped
    pictures between two frames, in presentation order, for the frame index."""

    def __init__(self, codec_context, enabled: bool, anchor: Fraction, sample_fps: Fraction):
        self.disposable = Disposable(codec_context) if enabled else None
        self.codec_context = codec_context
        self.sent: list[Fraction] = []  # sorted times of the pictures sent to the decoder
        self.anchor = anchor  # pictures before the anchor keyframe (its leading pictures) are not followed
        self.sample_fps = sample_fps
        self.times: list[Fraction] = []  # sorted times of the pictures skipped
        self.decoded: list[Fraction] = []  # heap: times of the pictures decoded and not out yet
        self.first_decoded: dict[int, Fraction] = {}  # per bin, the earliest picture sent to the decoder

    def skips(self, packet, seconds: Fraction | None, needed_from: Fraction) -> bool:
        if self.disposable is None or seconds is None:
            return False
        current_bin = sample_bin(seconds, self.sample_fps)
        earlier = self.first_decoded.get(current_bin)
        if (seconds < needed_from or (earlier is not None and earlier < seconds)) and self.disposable(packet):
            bisect.insort(self.times, seconds)  # nothing refers to it, and it cannot be its bin's first
            return True
        if seconds >= self.anchor:
            self._check_reordering(seconds)
            heapq.heappush(self.decoded, seconds)
            self.first_decoded[current_bin] = min(seconds, earlier if earlier is not None else seconds)
        return False

    def _check_reordering(self, seconds: Fraction) -> None:
        """Before a picture is sent: were more pictures later than it sent than the decoder holds
        back, one of them may be out already, and this one would be dropped as out of order."""
        later = len(self.sent) - bisect.bisect_right(self.sent, seconds)
        if later > self.codec_context.reorder_depth:
            if self.times:
                raise SkipUnsafe(f"the picture at {float(seconds):.3f} s follows {later} later ones, more than "
                                 f"the decoder holds back ({self.codec_context.reorder_depth})")  # fmt: skip
            self.disposable = None  # nothing skipped yet: decode as without skipping from here on
            return
        bisect.insort(self.sent, seconds)

    def came_out(self, seconds: Fraction) -> None:
        """A frame at ``seconds`` came out; raise ``SkipUnsafe`` if, with pictures skipped, one
        decoded before it in time never did (frames come out in time order: it never will)."""
        if seconds < self.anchor:
            return
        while self.decoded and self.decoded[0] <= seconds:
            earliest = heapq.heappop(self.decoded)
            if earliest < seconds and self.times:
                raise SkipUnsafe(f"the picture at {float(earliest):.3f} s did not come out of the decoder")

    def finish(self, end: Fraction) -> None:
        """The decoder has given back all it will: with pictures skipped, a picture before ``end``
        sent and never given back could have been its bin's first frame."""
        if self.times and any(seconds < end for seconds in self.decoded):
            raise SkipUnsafe(f"the picture at {float(min(self.decoded)):.3f} s did not come out of the decoder")

    def lost(self) -> None:
        """The decoder failed on a packet: with pictures skipped, decode again without skipping."""
        if self.times:
            raise SkipUnsafe("a packet could not be decoded while pictures were skipped")

    def between(self, after: Fraction, before: Fraction) -> int:
        """Pictures skipped strictly between two frames' times."""
        return bisect.bisect_left(self.times, before) - bisect.bisect_right(self.times, after)


class DecodePlan:
    """Which packets are worth decoding. All are, except the rest of a group of pictures once the
    next keyframe lies at or before the earliest frame still needed: nothing after that keyframe
    refers back past it, and the frames skipped all belong to sampling bins already closed. With
    keyframes on the sampling grid (many cameras write one a second) only keyframes are decoded.

    Only streams of closed groups are skipped in: a leading picture (after its keyframe in decode
    order, before it in time) marks open groups, whose pictures refer back past the keyframe and
    come out of a decoder in another order once their references are missing. Skipping starts
    when a second keyframe has shown no leading picture, and stops for good at the first one.

    ``needed_from`` is set by the caller as frames come out of the decoder, some frames late
    (threads, reordering); a keyframe inside the shard is taken to close its own bin as soon as it
    is demuxed (in closed groups no frame of its bin can come out before it but earlier ones).
    """

    def __init__(self, keyframe_seconds: Sequence[Fraction], needed_from: Fraction, sample_fps: Fraction, end: Fraction):
        self.keyframe_seconds = list(keyframe_seconds)  # sorted; keyframes the probe indexed
        self.needed_from = needed_from  # the earliest presentation time a frame is still needed for
        self.sample_fps = sample_fps
        self.end = end  # no frame at or after it is needed
        self.group_start: Fraction | None = None  # time of the keyframe opening the current group
        self.restart = end  # when the next group starts (or the end, if sooner)
        self.guessed_from = needed_from  # needed_from as it will be once that keyframe is out
        self.keyframes_seen = 0
        self.first_of_group = False
        self.closed_groups = self.open_groups = False
        self.decoded = self.skipped = 0

    def wants(self, is_keyframe: bool, seconds: Fraction | None) -> bool:
        if seconds is None:
            self.decoded += 1
            return True
        if is_keyframe:
            if self.first_of_group and self.keyframes_seen >= 2:
                self.closed_groups = True  # a group of one picture has no leading pictures
            self.group_start, self.first_of_group = seconds, True
            after = bisect.bisect_right(self.keyframe_seconds, seconds)  # once per group, not per packet
            self.restart = min(self.keyframe_seconds[after] if after < len(self.keyframe_seconds) else self.end, self.end)
            self.keyframes_seen += 1
            if self._group_unneeded():  # all-intra streams (MJPEG, keyint 1): skip whole pictures
                self.skipped += 1
                return False
            if self.needed_from <= seconds < self.end:
                self.guessed_from = (math.floor(seconds * self.sample_fps) + 1) / self.sample_fps
            self.decoded += 1
            return True
        if self.first_of_group:
            self.first_of_group = False
            if seconds < self.group_start:
                self.open_groups = True
            elif self.keyframes_seen >= 2:
                self.closed_groups = True
        if self._group_unneeded():
            self.skipped += 1
            return False
        self.decoded += 1
        return True

    @property
    def finished(self) -> bool:
        """Every sampling bin up to the end is taken: nothing more needs demuxing."""
        return self._needed_from() >= self.end

    def _needed_from(self) -> Fraction:
        guessing = self.closed_groups and not self.open_groups
        return max(self.needed_from, self.guessed_from) if guessing else self.needed_from

    def _group_unneeded(self) -> bool:
        """No frame of the current group is needed: the next keyframe is no later than the next
        frame still needed (closed groups only)."""
        if not self.closed_groups or self.open_groups:
            return False
        return self.restart <= self._needed_from()
