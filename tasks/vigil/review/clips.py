"""Evidence clips: a lossless excerpt of a recording, with a sealed record of where it came from.

A clip is a stream copy (no re-encode): packets are copied byte for byte from the keyframe at or
before the requested start, because a decoder can only start at a keyframe; the clip therefore
may begin up to one group of pictures early. It ends just before the first keyframe at or after
the requested end (or at the end of the recording), so every frame up to the end decodes.

Each clip gets a record beside it (``<clip>.json``, sealed like a manifest): the clip's SHA-256,
the source's SHA-256 and version, the byte and timestamp range copied, and the requested and
actual start and end in recording time and, where the recording's start is known, wall-clock time.
The record is signed, entered in the ledger and timestamped exactly as a manifest is
(``store.custody.publish_sealed``), so ``vigil verify --trust`` catches a clip whose record was
forged or resealed; ``verify_clips`` re-hashes every clip against its record.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from vigil.errors import IntegrityError, ObjectNotFound, ParameterError, RecordingError
from vigil.store.layout import CLIPS, partition
from vigil.store.custody import publish_sealed
from vigil.store.manifest import load_sealed
from vigil.store.storage import storage_for
from vigil.store.vouched import vouched_records
from vigil.uri import join_uri

CLIP_FORMAT = "clip-1"
_SEEK_BACK_S = (0, 2, 10, 60, 600)  # how far before the start to look for a keyframe, in turn


@dataclass(frozen=True)
class ClipRecord:
    """Everything a court needs to tie a clip to its source (times in seconds of recording time)."""

    recording_id: str
    clip_path: str  # relative to the output location
    clip_sha256: str
    clip_bytes: int
    source: dict  # uri, sha256, size, etag, version_id, last_modified (from the recording's manifest)
    stream_index: int
    requested: dict  # start_s, end_s, pad_s, and wall-clock start/end where known
    actual: dict  # start_s, end_s, wall-clock start/end where known
    copied: dict  # packets, first/last pts and dts (stream time base), byte_start, byte_end
    time_base: str
    format: str = CLIP_FORMAT

    def to_dict(self) -> dict:
        return asdict(self)


def make_clip(out: str, recording: str, start: float, end: float, pad: float = 0.0,
              conn_id: str | None = None, source_conn_id: str | None = None) -> ClipRecord:  # fmt: skip
    """Cut ``[start - pad, end + pad)`` (seconds of recording time) of ``recording`` out of its
    source and publish the clip and its record under ``out/clips/``."""
    from vigil.review.query import manifests

    return cut_clip(out, _one_manifest(manifests(out, conn_id), recording), start, end, pad, conn_id, source_conn_id)


def cut_clip(out: str, manifest, start: float, end: float, pad: float = 0.0,
             conn_id: str | None = None, source_conn_id: str | None = None) -> ClipRecord:  # fmt: skip
    """``make_clip`` for a recording whose ``Manifest`` is at hand (finalize cuts before it publishes)."""
    from vigil.media.probe import RecordingProbe

    described = RecordingProbe.from_dict(manifest.probe)
    duration = float(described.duration)
    if pad < 0 or not 0 <= start < end:
        raise ParameterError(f"a clip needs 0 <= --from < --to and --pad >= 0; got from={start}, to={end}, pad={pad}")
    if start >= duration:
        raise ParameterError(f"--from {start} s lies past the end of {manifest.recording_id} ({duration:.3f} s)")
    lo, hi = max(0.0, start - pad), min(duration, end + pad)
    lo_pts = described.start_pts + int(Fraction(lo) / described.tb)
    hi_pts = described.start_pts + int(Fraction(hi) / described.tb)
    source = manifest.source.to_dict()
    stream_index = described.stream_index  # counted among video streams, attached pictures left out
    data, copied = _copy_packets(source, described, lo_pts, hi_pts, source_conn_id)
    digest = hashlib.sha256(data).hexdigest()
    name = f"{manifest.recording_id}_{_stamp(lo)}-{_stamp(hi)}_{digest[:8]}.mp4"
    clip_path = "/".join((CLIPS, partition(manifest.recording_id), name))
    actual_start = float(described.seconds(copied["first_timeline_pts"]))
    actual_end = float(described.seconds(copied["end_pts"]))
    wall = _wall_clock(manifest.recording_start)
    record = ClipRecord(
        recording_id=manifest.recording_id,
        clip_path=clip_path,
        clip_sha256=digest,
        clip_bytes=len(data),
        source={k: source.get(k) for k in ("uri", "sha256", "size", "etag", "version_id", "last_modified")},
        stream_index=stream_index,
        requested={"start_s": start, "end_s": end, "pad_s": pad, "wall_start": wall(start), "wall_end": wall(end)},
        actual={"start_s": actual_start, "end_s": actual_end, "wall_start": wall(actual_start), "wall_end": wall(actual_end)},
        copied={k: v for k, v in copied.items() if k != "end_pts"},
        time_base=described.time_base,
    )
    storage = storage_for(out, conn_id)
    storage.write_bytes(join_uri(out, clip_path), data)
    record_uri = join_uri(out, clip_path + ".json")
    if publish_sealed(storage, out, record_uri, record.to_dict(), if_absent=True) is None:
        # Cut before (the name holds the clip's hash): its first record, signed and ledgered, stands.
        return _existing(storage, record_uri, digest)
    return record


def clips_for(out: str, manifest, tables: dict, pad: float = 2.0, conn_id: str | None = None,
              source_conn_id: str | None = None) -> tuple[dict[str, dict], list[str]]:  # fmt: skip
    """A clip for every presence interval (``presence-N``) and posture event (``event-N``) of a
    recording, asked for in the trigger (``clips``); ``({key: record}, warnings)``. A clip that
    cannot be cut costs that clip, named in a warning, never the analysis."""
    from vigil.errors import VigilError
    from vigil.store.schema import POSE_EVENTS, PRESENCE

    wanted = [(f"presence-{row['interval']}", row) for row in tables[PRESENCE].to_pylist()]
    wanted += [(f"event-{number}", row) for number, row in enumerate(tables[POSE_EVENTS].to_pylist(), 1)]
    made, warnings = {}, []
    for key, row in wanted:
        end = min(row["end_s"], float(manifest.duration))
        try:
            made[key] = cut_clip(out, manifest, row["start_s"], end, pad, conn_id, source_conn_id).to_dict()
        except (VigilError, OSError, ValueError) as exc:
            warnings.append(f"clip for {key} not cut: {exc}")
    return made, warnings


def covering_clip(records: list[dict], recording_id: str, start: float, end: float) -> dict | None:
    """The shortest clip record of the recording that covers ``[start, end)``."""
    covering = [r for r in records if r["recording_id"] == recording_id
                and r["actual"]["start_s"] <= start + 1e-6 and r["actual"]["end_s"] >= end - 1e-3]  # fmt: skip
    return min(covering, key=lambda r: r["actual"]["end_s"] - r["actual"]["start_s"], default=None)


def verify_clips(out: str, conn_id: str | None = None) -> list[str]:
    """Problems found re-hashing every clip under ``out`` against its sealed record (empty: all good)."""
    storage = storage_for(out, conn_id)
    problems = []
    for info in storage.list(join_uri(out, CLIPS)):
        if not info.uri.endswith(".json"):
            continue
        try:
            record = load_sealed(storage.read_bytes(info.uri), info.uri)
            data = storage.read_bytes(join_uri(out, record["clip_path"]))
        except (IntegrityError, RecordingError, ObjectNotFound) as exc:  # altered record, or the clip is gone
            problems.append(f"{info.uri}: {exc}")
            continue
        if hashlib.sha256(data).hexdigest() != record["clip_sha256"]:
            problems.append(f"{record['clip_path']}: SHA-256 differs from its record {info.uri}")
    return problems


def _existing(storage, record_uri: str, digest: str) -> ClipRecord:
    values = load_sealed(storage.read_bytes(record_uri), record_uri)
    if values.get("clip_sha256") != digest:
        raise IntegrityError(f"{record_uri}: already records another clip ({values.get('clip_sha256')}); not replaced")
    fields = ClipRecord.__dataclass_fields__
    return ClipRecord(**{k: v for k, v in values.items() if k in fields})


def load_clip_records(out: str, conn_id: str | None = None) -> list[dict]:
    """Every clip record under ``out`` that the ledger vouches for (store/vouched.py); an altered
    record is an error naming it."""
    return vouched_records(storage_for(out, conn_id), out, join_uri(out, CLIPS))


def _one_manifest(listed: list, recording: str):
    exact = [m for m in listed if m.recording_id == recording]
    matches = exact or [m for m in listed if m.recording_id.startswith(recording)]
    if len(matches) != 1:
        names = ", ".join(m.recording_id for m in matches) or "none"
        raise ParameterError(f"recording {recording!r} must name exactly one recording of the output; matches: {names}")
    return matches[0]


def _copy_packets(source: dict, described, lo_pts: int, hi_pts: int, conn_id: str | None) -> tuple[bytes, dict]:
    """Stream-copy packets ``[keyframe at or before lo_pts, first keyframe at or after hi_pts)``,
    times on the recording timeline (the probe's: clock resets and wraps followed)."""
    import av

    from vigil.media.containers import video_streams

    if described.synthesized_fps:
        raise ParameterError(
            "this recording's stream carries no timestamps (its times were synthesised with frame_rate): "
            "vigil cannot cut a clip a player would time correctly; export the range from the original file"
        )
    storage = storage_for(source["uri"], conn_id)
    info = storage.stat(source["uri"])
    if info.size != source["size"] or (source.get("etag") and info.etag != source["etag"]):
        raise IntegrityError(
            f"{source['uri']} changed since it was analysed (size/ETag differ from the manifest); "
            "a clip must come from the exact bytes that were analysed"
        )
    with storage.open(source["uri"], etag=source.get("etag")) as handle, av.open(handle) as container:
        stream = video_streams(container)[described.stream_index]
        chosen, end_pts = _packets_from_keyframe(container, stream, described, lo_pts, hi_pts)
        if not chosen:
            raise RecordingError(f"{source['uri']}: no packets between the requested times")
        packets = [p for p, _ in chosen]
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "clip.mp4")
            shift = chosen[0][1] - (packets[0].pts - packets[0].dts if packets[0].dts is not None else 0)
            copied = {
                "packets": len(packets),
                "first_pts": packets[0].pts,  # the container's own clock
                "last_pts": max(p.pts for p in packets),
                "first_dts": packets[0].dts,
                "last_dts": packets[-1].dts,
                "byte_start": min((p.pos for p in packets if p.pos is not None and p.pos >= 0), default=None),
                "byte_end": max((p.pos + p.size for p in packets if p.pos is not None and p.pos >= 0), default=None),
                "first_timeline_pts": chosen[0][1],  # the recording timeline's (what times in vigil mean)
                "end_pts": end_pts,
            }
            with av.open(path, "w", format="mp4") as output:
                target = output.add_stream_from_template(stream)
                for packet, placed in chosen:
                    offset = placed - packet.pts  # from the container's clock to the timeline, then to 0
                    if packet.dts is not None:
                        packet.dts += offset - shift
                    packet.pts = placed - shift
                    packet.stream = target
                    output.mux(packet)
            with open(path, "rb") as clip:
                return clip.read(), copied


def _packets_from_keyframe(container, stream, described, lo_pts: int, hi_pts: int) -> tuple[list, int | None]:
    """``[(packet, timeline pts)]`` in decode order from the last keyframe at or before ``lo_pts``
    up to the first keyframe at or after ``hi_pts``, and where the copied frames end (timeline).

    Where the recording's clock is clean, a timestamp seek finds the start; containers without an
    index (MPEG-TS) may seek past the keyframe, so it seeks further back until the first keyframe
    lies at or before the start. Where the clock breaks (glued segments, wraps), raw times repeat,
    so the file is followed from its first packet with the probe's ``Clock``, as the probe did.
    Leading pictures of an open group that follow the start keyframe but show before it cannot
    decode without the previous group: they are left out. The end is the break keyframe's time, or
    earlier where leading pictures after it in decode order show before it.
    """
    from vigil.media.timeline import Clock

    if described.discontinuities or described.wrap_bits:
        clock = Clock(described.tb, described.wrap_bits)
        return _select(container.demux(stream), lo_pts, hi_pts, lambda p: clock.place(p.pts, p.dts))
    tb = stream.time_base
    for back in _SEEK_BACK_S:
        target = max(0, lo_pts - int(back / tb)) if back else lo_pts
        container.seek(target, stream=stream, backward=True, any_frame=False)
        chosen, end_pts = _select(container.demux(stream), lo_pts, hi_pts, lambda p: p.pts)
        if chosen:
            return chosen, end_pts
    return [], None


def _select(packets, lo_pts: int, hi_pts: int, place) -> tuple[list, int | None]:
    chosen, start, end, after_break = [], None, None, 0
    for packet in packets:
        placed = place(packet)  # every packet, so a clock follows the file as the probe did
        if packet.size == 0 or placed is None:
            continue
        if end is not None:  # past the break: look a little further for leading pictures
            end = min(end, placed)
            after_break += 1
            if after_break >= 16:
                break
            continue
        if packet.is_keyframe and placed <= lo_pts:
            chosen, start = [], placed  # a later keyframe still at or before the start
        elif packet.is_keyframe and placed >= hi_pts and start is not None:
            end = placed
            continue
        if start is not None and placed >= start:
            chosen.append((packet, placed))
    if start is None or not chosen:
        return [], None
    if end is None:  # the recording ended first
        last, placed = max(chosen, key=lambda c: c[1])
        end = placed + (last.duration or 0)
    return chosen, end


def _wall_clock(recording_start: str | None):
    if not recording_start:
        return lambda seconds: None
    origin = datetime.fromisoformat(recording_start.replace("Z", "+00:00"))
    return lambda seconds: (origin + timedelta(seconds=seconds)).isoformat()


def _stamp(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}{whole % 3600 // 60:02d}{whole % 60:02d}"
