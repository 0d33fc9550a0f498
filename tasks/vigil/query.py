"""Investigator queries over an output location, with DuckDB.

Only files listed in a recording's manifest are read: a shard file without a manifest (a run
that crashed, an attempt that lost a race) is never part of an answer.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from vigil.errors import ParameterError
from vigil.manifest import file_uris, load_manifest
from vigil.schema import MANIFESTS, SCHEMAS, TABLES
from vigil.storage import join_uri, storage_for


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple]


def manifests(out: str, conn_id: str | None = None) -> list[dict]:
    """Every manifest under ``out``; an altered manifest is refused (run ``vigil verify``)."""
    storage = storage_for(out, conn_id)
    found = [
        load_manifest(storage.read_bytes(info.uri), info.uri)
        for info in storage.list(join_uri(out, MANIFESTS))
        if info.uri.endswith(".json")
    ]
    return sorted(found, key=lambda m: m["recording_id"])


def connect(out: str, conn_id: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views ``detections``, ``frames`` and ``recordings``."""
    storage = storage_for(out, conn_id)
    listed = manifests(out, conn_id)
    con = duckdb.connect()
    for table in TABLES:
        parts = [
            pq.read_table(io.BytesIO(storage.read_bytes(uri)), schema=SCHEMAS[table])
            for manifest in listed
            for uri in file_uris(manifest, out, table)
        ]
        arrow = pa.concat_tables(parts) if parts else SCHEMAS[table].empty_table()
        con.register(f"_{table}", arrow)
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}")
    recordings = pa.Table.from_pylist(
        [
            {
                "recording_id": m["recording_id"],
                "source_uri": m["source"]["uri"],
                "sha256": m["source"]["sha256"],
                "duration_s": m["duration_s"],
                "sampled_frames": m["totals"]["sampled_frames"],
                "detections": m["totals"]["detections"],
            }
            for m in listed
        ],
        schema=pa.schema(
            [("recording_id", pa.string()), ("source_uri", pa.string()), ("sha256", pa.string()),
             ("duration_s", pa.float64()), ("sampled_frames", pa.int64()), ("detections", pa.int64())]
        ),
    )  # fmt: skip
    con.register("recordings", recordings)
    return con


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> Result:
    cursor = con.execute(sql, params or [])
    return Result([d[0] for d in cursor.description], cursor.fetchall())


def parse_time(value: str | float | None) -> float | None:
    """Seconds from ``HH:MM:SS[.fff]``, ``MM:SS`` or plain seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not re.fullmatch(r"\d+(:\d{1,2}){0,2}(\.\d+)?", value):
        raise ParameterError(f"times are HH:MM:SS(.fff), MM:SS or seconds; got {value!r}")
    seconds = 0.0
    for part in value.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def _recording_filter(recording: str | None, column: str = "recording_id") -> tuple[str, list]:
    if not recording:
        return "TRUE", []
    # Accept the full id or its file-stem prefix, as investigators type what they see.
    return f"({column} = ? OR {column} LIKE ? || '-%')", [recording, recording]


def presence(con, recording: str | None = None, max_gap_s: float = 2.0, min_persons: int = 1) -> Result:
    """Intervals in which at least ``min_persons`` were seen, merging gaps up to ``max_gap_s``.

    A gap counts only between analysed frames: an interval ends at the last frame with people
    and the next one starts at the first such frame after more than ``max_gap_s`` seconds.
    """
    where, args = _recording_filter(recording)
    sql = f"""
        WITH seen AS (
            SELECT recording_id, pts_s, persons, captured_at FROM frames
            WHERE status = 'ok' AND persons >= ? AND {where}
        ), marked AS (
            SELECT *, CASE WHEN pts_s - lag(pts_s) OVER w > ? OR lag(pts_s) OVER w IS NULL THEN 1 ELSE 0 END AS new
            FROM seen WINDOW w AS (PARTITION BY recording_id ORDER BY pts_s)
        ), numbered AS (
            SELECT *, sum(new) OVER (PARTITION BY recording_id ORDER BY pts_s) AS interval_no FROM marked
        )
        SELECT recording_id, interval_no AS "interval",
               round(min(pts_s), 3) AS start_s, round(max(pts_s), 3) AS end_s,
               round(max(pts_s) - min(pts_s), 3) AS seconds,
               max(persons) AS max_persons, count(*) AS frames,
               min(captured_at) AS captured_from
        FROM numbered GROUP BY recording_id, interval_no ORDER BY recording_id, start_s
    """
    return run_sql(con, sql, [min_persons, *args, max_gap_s])


def counts(con, recording: str | None = None, bucket_s: float = 60.0) -> Result:
    """How many people per time bucket (default: per minute): max and mean over sampled frames."""
    if bucket_s <= 0:
        raise ParameterError(f"bucket must be positive seconds, got {bucket_s}")
    where, args = _recording_filter(recording)
    sql = f"""
        SELECT recording_id, floor(pts_s / ?) * ? AS bucket_start_s,
               count(*) AS frames, count(*) FILTER (WHERE status <> 'ok') AS not_analysed,
               max(persons) AS max_persons, round(avg(persons), 2) AS mean_persons
        FROM frames WHERE {where}
        GROUP BY ALL ORDER BY recording_id, bucket_start_s
    """
    return run_sql(con, sql, [bucket_s, bucket_s, *args])


def detections(con, recording: str | None, start_s: float | None, end_s: float | None, min_conf: float = 0.0) -> Result:
    """Every detection of a recording in ``[start_s, end_s)``, with its box and keypoints."""
    where, args = _recording_filter(recording)
    sql = f"""
        SELECT recording_id, frame_index, round(pts_s, 3) AS pts_s, captured_at, det_index,
               round(confidence::DOUBLE, 3) AS confidence, round(x1::DOUBLE, 1) AS x1, round(y1::DOUBLE, 1) AS y1,
               round(x2::DOUBLE, 1) AS x2, round(y2::DOUBLE, 1) AS y2, source_uri
        FROM detections
        WHERE {where} AND pts_s >= ? AND pts_s < ? AND confidence >= ?
        ORDER BY recording_id, pts_s, det_index
    """
    lo = start_s if start_s is not None else float("-inf")
    hi = end_s if end_s is not None else float("inf")
    return run_sql(con, sql, [*args, lo, hi, min_conf])


def format_result(result: Result, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps([dict(zip(result.columns, row)) for row in result.rows], default=str, indent=1)
    if fmt == "csv":
        import csv

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        return buffer.getvalue()
    cells = [result.columns] + [["" if v is None else str(v) for v in row] for row in result.rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(result.columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({len(result.rows)} rows)")
    return "\n".join(lines)
