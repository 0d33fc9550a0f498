"""THE Parquet schemas of vigil's outputs, and their version. Every other module takes names from here.

Output layout under an output URI (Hive-partitioned by recording)::

    detections/recording_id=<id>/shard-<index>-<key>.parquet   one row per person per sampled frame
    frames/recording_id=<id>/shard-<index>-<key>.parquet       one row per sampled frame
    manifests/<id>.<run key>.json                              the files a reader may trust

(``store/layout.py`` owns these paths, and the review, clip and ledger folders beside them.)

``recording_id`` is a partition column: it lives in the directory name, and readers that use Hive
partitioning (DuckDB, pyarrow.dataset) get it back as a column. It is also stored in the files, so
a file read on its own still says where it came from.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 2  # 2: frames.until_s (a no_frame row stands for a run of bins)
PROVENANCE_KEY = b"vigil.provenance"  # Parquet key-value metadata: JSON, see orchestration/pipeline._provenance()

DETECTIONS = "detections"
FRAMES = "frames"
MANIFESTS = "manifests"
TABLES = (DETECTIONS, FRAMES)

from vigil.model.keypoints import COCO_KEYPOINTS, KEYPOINTS  # noqa: E402,F401  (one vocabulary)
from vigil.media.status import STATUS_NO_FRAME, STATUS_OK, STATUS_STATIC, STATUS_UNDECODABLE, STATUSES  # noqa: F401

_keypoints = pa.list_(pa.float32(), KEYPOINTS)

DETECTIONS_SCHEMA = pa.schema(
    [
        pa.field("recording_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("shard_index", pa.int32(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("pts_s", pa.float64(), nullable=False),
        pa.field("captured_at", pa.timestamp("us", tz="UTC")),
        pa.field("det_index", pa.int32(), nullable=False),
        pa.field("track_id", pa.int64()),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("x1", pa.float32(), nullable=False),
        pa.field("y1", pa.float32(), nullable=False),
        pa.field("x2", pa.float32(), nullable=False),
        pa.field("y2", pa.float32(), nullable=False),
        pa.field("kp_x", _keypoints, nullable=False),
        pa.field("kp_y", _keypoints, nullable=False),
        pa.field("kp_conf", _keypoints, nullable=False),
        pa.field("runtime", pa.string(), nullable=False),
    ]
)

FRAMES_SCHEMA = pa.schema(
    [
        pa.field("recording_id", pa.string(), nullable=False),
        pa.field("shard_index", pa.int32(), nullable=False),
        pa.field("frame_index", pa.int64()),  # null when no frame of the bin could be analysed
        pa.field("pts_s", pa.float64(), nullable=False),
        pa.field("captured_at", pa.timestamp("us", tz="UTC")),
        pa.field("persons", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("inherits_from", pa.int64()),  # for status "static": the analysed frame it copies
        pa.field("runtime", pa.string(), nullable=False),
        pa.field("until_s", pa.float64()),  # for a "no_frame" row: the end of the run of bins it stands for
    ]
)

# Derived per recording once all its shards are done (see derived.py): one file per table.
TRACK_POINTS = "track_points"
TRACKS = "tracks"
PRESENCE = "presence"
POSE_EVENTS = "pose_events"
TRACK_APPEARANCE = "track_appearance"  # optional: absent when the source frames could not be read
DERIVED_TABLES = (TRACK_POINTS, TRACKS, PRESENCE, POSE_EVENTS, TRACK_APPEARANCE)
ALL_TABLES = TABLES + DERIVED_TABLES

_utc = pa.timestamp("us", tz="UTC")

TRACK_POINTS_SCHEMA = pa.schema(
    [
        pa.field("recording_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("det_index", pa.int32(), nullable=False),
        pa.field("pts_s", pa.float64(), nullable=False),
        pa.field("track_id", pa.int64(), nullable=False),
    ]
)

TRACKS_SCHEMA = pa.schema(
    [
        pa.field("recording_id", pa.string(), nullable=False),
        pa.field("track_id", pa.int64(), nullable=False),
        pa.field("first_s", pa.float64(), nullable=False),
        pa.field("last_s", pa.float64(), nullable=False),
        pa.field("first_captured_at", _utc),
        pa.field("frames", pa.int32(), nullable=False),
        pa.field("mean_confidence", pa.float32(), nullable=False),
        pa.field("best_frame_index", pa.int64(), nullable=False),
        pa.field("best_pts_s", pa.float64(), nullable=False),
        pa.field("best_det_index", pa.int32(), nullable=False),
        pa.field("best_x1", pa.float32(), nullable=False),
        pa.field("best_y1", pa.float32(), nullable=False),
        pa.field("best_x2", pa.float32(), nullable=False),
        pa.field("best_y2", pa.float32(), nullable=False),
    ]
)

PRESENCE_SCHEMA = pa.schema(
    [
        pa.field("recording_id", pa.string(), nullable=False),
        pa.field("interval", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("start_captured_at", _utc),
        pa.field("end_captured_at", _utc),
        pa.field("max_persons", pa.int32(), nullable=False),
        pa.field("frames", pa.int32(), nullable=False),
        pa.field("track_ids", pa.list_(pa.int64()), nullable=False),
    ]
)

POSE_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("recording_id", pa.string(), nullable=False),
        pa.field("track_id", pa.int64(), nullable=False),
        pa.field("posture", pa.string(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("start_captured_at", _utc),
        pa.field("frames", pa.int32(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("rule_version", pa.string(), nullable=False),
        pa.field("best_frame_index", pa.int64(), nullable=False),
        pa.field("best_pts_s", pa.float64(), nullable=False),
        pa.field("best_det_index", pa.int32(), nullable=False),
    ]
)

TRACK_APPEARANCE_SCHEMA = pa.schema(
    [
        pa.field("recording_id", pa.string(), nullable=False),
        pa.field("track_id", pa.int64(), nullable=False),
        pa.field("method_version", pa.string(), nullable=False),
        pa.field("dims", pa.int32(), nullable=False),
        pa.field("descriptor", pa.list_(pa.float32()), nullable=False),
        pa.field("view_frames", pa.list_(pa.int64()), nullable=False),
    ]
)

SCHEMAS = {
    DETECTIONS: DETECTIONS_SCHEMA,
    FRAMES: FRAMES_SCHEMA,
    TRACK_POINTS: TRACK_POINTS_SCHEMA,
    TRACKS: TRACKS_SCHEMA,
    PRESENCE: PRESENCE_SCHEMA,
    POSE_EVENTS: POSE_EVENTS_SCHEMA,
    TRACK_APPEARANCE: TRACK_APPEARANCE_SCHEMA,
}

# What each column means: rendered into the README's schema table (see tests/test_schema.py).
DESCRIPTIONS = {
    "recording_id": "the recording: file stem plus the first 12 hex digits of its SHA-256",
    "source_uri": "the object the rows were read from (s3://… or file://…)",
    "shard_index": "which time shard produced the row (shard i covers [i·shard_seconds, (i+1)·shard_seconds))",
    "frame_index": "index of the frame in the source video stream, in presentation order, from 0",
    "pts_s": "presentation time in seconds from the first frame, on the recording timeline (pts × time_base; segments after a clock reset placed after the earlier ones, see the manifest's probe.discontinuities); for a bin without an analysed frame, the bin's start",
    "until_s": "for a 'no_frame' row: the end (exclusive) of the run of sampling bins it stands for, a whole gap of the recording in one row; null for every other row",
    "captured_at": "wall-clock UTC time of the frame; null when the recording's start time is unknown",
    "det_index": "rank of the person in the frame, 0 = highest confidence",
    "track_id": "identity of the person across frames, assigned per recording once all its shards are done (shard files store null; the detections view fills it in)",
    "confidence": "person detection score, 0–1",
    "x1": "box left edge, displayed-frame pixels (after the display rotation, see the manifest)",
    "y1": "box top edge, displayed-frame pixels (after the display rotation, see the manifest)",
    "x2": "box right edge, displayed-frame pixels (after the display rotation, see the manifest)",
    "y2": "box bottom edge, displayed-frame pixels (after the display rotation, see the manifest)",
    "kp_x": "17 keypoint x coordinates, COCO order, displayed-frame pixels (after the display rotation, see the manifest)",
    "kp_y": "17 keypoint y coordinates, COCO order, displayed-frame pixels (after the display rotation, see the manifest)",
    "kp_conf": "17 keypoint confidences, COCO order, 0–1",
    "persons": "number of people detected in the frame (0 = analysed and nobody there)",
    "runtime": "the inference runtime, the precision and CPU instructions it computed with (and the decoder, if "
    "not the CPU) that produced the row, e.g. openvino-2026.4.1/cpu/bf16-amx, openvino-2026.4.1/cpu/bf16-avx512, "
    "onnxruntime-1.32.0/cpu/f32-avx2 or torch-2.14.1/cuda:0/fp16/nvdec",
    "first_s": "time of the track's first detection (seconds from the first frame)",
    "last_s": "time of the track's last detection",
    "first_captured_at": "wall-clock UTC time of the first detection, when the recording's start is known",
    "frames": "number of sampled frames (track: with this person; presence: in the interval; event: holding the posture)",
    "mean_confidence": "mean detection score over the track",
    "best_frame_index": "frame with the best view (track: largest box among confident detections; event: highest score)",
    "best_pts_s": "time of that frame",
    "best_det_index": "det_index of the person in that frame",
    "best_x1": "best view box, left", "best_y1": "best view box, top", "best_x2": "best view box, right",
    "best_y2": "best view box, bottom",
    "interval": "number of the presence interval in the recording, from 1",
    "start_s": "start of the interval (seconds from the first frame)",
    "end_s": "end of the interval (exclusive: end of its last sampling interval)",
    "start_captured_at": "wall-clock UTC start, when known",
    "end_captured_at": "wall-clock UTC end, when known",
    "max_persons": "most people seen in one frame of the interval",
    "track_ids": "the tracks seen in the interval",
    "posture": "lying, hands_raised, arms_behind_back, kneeling_or_crouching or suspended",
    "score": "mean rule score over the event's frames, 0–1",
    "rule_version": "version of the posture rules that produced the event",
    "inherits_from": "for a 'static' frame (gating on), the frame_index of the analysed frame whose detections it inherits; else null",
    "method_version": "how the descriptor was made: feature layers, pooling, crop size, and the weights (name@SHA-256 prefix); compare only equal versions",
    "dims": "length of the descriptor",
    "descriptor": "whole-body appearance descriptor (unit length; cosine similarity = dot product); never a face",
    "view_frames": "frame_index of each view averaged into the descriptor (the best view and up to 4 more)",
    "status": "'ok': decoded and analysed; 'undecodable': the container holds frames here but none decoded (damage); 'no_frame': the container holds no frame in these sampling intervals (a gap in the recording, from pts_s to until_s); 'static': decoded but unchanged since an analysed frame, not analysed itself (see inherits_from)",
}

def markdown_table(table: str) -> str:
    """The README table for one output table's columns."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for column in SCHEMAS[table]:
        lines.append(f"| `{column.name}` | {column.type} | {DESCRIPTIONS[column.name]} |")
    return "\n".join(lines)
