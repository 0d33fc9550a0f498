"""Collect one shard's rows and publish them as Parquet files, atomically, with provenance."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vigil.config import sampling_rate
from vigil.model.detections import Detections
from vigil.media.sharding import sample_bin
from vigil.store.contracts import FileEntry
from vigil.store.schema import DETECTIONS, FRAMES, PROVENANCE_KEY, SCHEMAS, STATUS_OK, STATUS_STATIC
from vigil.store.storage import Storage

ROW_GROUP_ROWS = 50_000


@dataclass
class ShardRows:
    """Rows of one shard, column by column, in the order of ``schema.SCHEMAS``."""

    recording_id: str
    source_uri: str
    shard_index: int
    sample_fps: float
    runtime: str
    recording_start: datetime | None = None
    detections: dict[str, list] = field(default_factory=lambda: {n: [] for n in SCHEMAS[DETECTIONS].names})
    frames: dict[str, list] = field(default_factory=lambda: {n: [] for n in SCHEMAS[FRAMES].names})
    spans: list[tuple[Fraction, Fraction | None, str]] = field(default_factory=list)  # (from, until, status)

    def add_missing(self, seconds: Fraction, status: str, until: Fraction | None = None) -> None:
        """A sampling bin with no analysed frame (``seconds`` is the bin's start), or with ``until``
        a run of bins up to ``until`` (exclusive): one row stands for a whole gap of the recording."""
        self.add_frame(None, seconds, Detections.empty(), status, until=until)

    def add_static(self, frame_index: int, seconds: Fraction, reference: int, found: Detections) -> None:
        """A frame not analysed because it did not change since frame ``reference``: it says how
        many people that frame showed, and no detection rows are written for it."""
        self.add_frame(frame_index, seconds, found, STATUS_STATIC, inherits_from=reference)

    def add_frame(self, frame_index: int | None, seconds: Fraction, found: Detections, status: str = STATUS_OK,
                  inherits_from: int | None = None, until: Fraction | None = None) -> None:  # fmt: skip
        self.spans.append((seconds, until, status))
        pts_s = float(seconds)
        captured_at = self.recording_start + timedelta(seconds=pts_s) if self.recording_start else None
        _append(
            self.frames,
            recording_id=self.recording_id,
            shard_index=self.shard_index,
            frame_index=frame_index,
            pts_s=pts_s,
            captured_at=captured_at,
            persons=len(found),
            status=status,
            inherits_from=inherits_from,
            runtime=self.runtime,
            until_s=None if until is None else float(until),
        )
        if status == STATUS_STATIC:
            return
        for det_index in range(len(found)):
            x1, y1, x2, y2 = (float(v) for v in found.xyxy[det_index])
            keypoints = found.keypoints[det_index]
            _append(
                self.detections,
                recording_id=self.recording_id,
                source_uri=self.source_uri,
                shard_index=self.shard_index,
                frame_index=frame_index,
                pts_s=pts_s,
                captured_at=captured_at,
                det_index=det_index,
                track_id=None,
                confidence=float(found.confidence[det_index]),
                x1=x1,
                y1=y1,
                x2=x2,
                y2=y2,
                kp_x=keypoints[:, 0].astype(np.float32).tolist(),
                kp_y=keypoints[:, 1].astype(np.float32).tolist(),
                kp_conf=keypoints[:, 2].astype(np.float32).tolist(),
                runtime=self.runtime,
            )

    def table(self, name: str) -> pa.Table:
        """The rows in time order (bins without a frame are added after the decoded ones)."""
        columns = self.detections if name == DETECTIONS else self.frames
        table = pa.Table.from_pydict(columns, schema=SCHEMAS[name])
        keys = [("pts_s", "ascending")] + ([("det_index", "ascending")] if name == DETECTIONS else [])
        return table.sort_by(keys)


    def coverage(self, start: Fraction, end: Fraction) -> list[list]:
        """``[start_s, end_s, status]`` ranges tiling the shard: what was analysed, and what not."""
        interval = 1 / sampling_rate(self.sample_fps)
        ranges: list[list] = []
        spans = []
        for seconds, until, status in self.spans:
            index = sample_bin(seconds, self.sample_fps)
            hi = until if until is not None else (index + 1) * interval
            spans.append((max(start, index * interval), min(end, hi), status))
        for lo, hi, status in sorted(spans, key=lambda span: span[0]):
            if ranges and ranges[-1][2] == status and ranges[-1][1] == lo:
                ranges[-1][1] = hi
            else:
                ranges.append([lo, hi, status])
        return [[float(lo), float(hi), status] for lo, hi, status in ranges]


def _append(columns: dict[str, list], **values) -> None:
    for name, value in values.items():
        columns[name].append(value)


def parquet_bytes(table: pa.Table, provenance: dict) -> bytes:
    """Serialize a table with vigil's provenance in the file's key-value metadata.

    The writer options are fixed so the same rows give the same bytes on a re-run.
    """
    metadata = dict(table.schema.metadata or {})
    metadata[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True).encode()
    buffer = io.BytesIO()
    pq.write_table(
        table.replace_schema_metadata(metadata),
        buffer,
        row_group_size=ROW_GROUP_ROWS,
        compression="zstd",
        write_statistics=True,
    )
    return buffer.getvalue()


def publish(storage: Storage, uri: str, data: bytes, rows: int, overwrite: bool = False) -> FileEntry:
    """Publish ``data`` under ``uri`` in one atomic step, as a conditional create.

    If another attempt of the same shard published first, its file is kept and described
    instead: the key is deterministic, so both hold the same rows. ``overwrite`` replaces it.
    """
    if storage.write_bytes(uri, data, if_absent=not overwrite):
        return FileEntry(uri=uri, sha256=hashlib.sha256(data).hexdigest(), rows=rows, bytes=len(data))
    return describe(uri, storage.read_bytes(uri))


def describe(uri: str, data: bytes) -> FileEntry:
    """What a manifest records about a published file."""
    rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    return FileEntry(uri=uri, sha256=hashlib.sha256(data).hexdigest(), rows=rows, bytes=len(data))


def read_provenance(data: bytes) -> dict:
    """The provenance a vigil Parquet file carries."""
    metadata = pq.ParquetFile(io.BytesIO(data)).schema_arrow.metadata or {}
    return json.loads(metadata[PROVENANCE_KEY])
