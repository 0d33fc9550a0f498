"""Investigator queries over an output location, with DuckDB.

Only files listed in a recording's manifest are read: a shard file without a manifest (a run
that crashed, an attempt that lost a race) is never part of an answer. When runs with different
settings left several manifests for one recording, the latest finalized one answers.
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from vigil.errors import ParameterError
from vigil.store.manifest import Manifest
from vigil.store.schema import ALL_TABLES, DETECTIONS, SCHEMAS
from vigil.store.storage import storage_for
from vigil.store.verified import listed_files, read_verified
from vigil.store.vouched import vouched_manifests

log = logging.getLogger(__name__)


# DuckDB settings for every connection vigil opens: the tables are registered from memory, so
# nothing needs the file system or the network.
LOCKED_DOWN = {
    "enable_external_access": False,  # no read_csv('/etc/passwd'), COPY … TO, ATTACH, INSTALL
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,  # FROM some_name never reaches a Python variable
}


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple]


def manifests(out: str, conn_id: str | None = None) -> list[Manifest]:
    """The manifest of each recording under ``out`` (its latest run) that the ledger vouches for
    (store/vouched.py). An altered, unrecorded or unreadable manifest is left out and logged (run
    ``vigil verify``); it never hides the others."""
    listing = vouched_manifests(storage_for(out, conn_id), out)
    for _, problem in listing.problems:
        log.warning("left out: %s (run vigil verify)", problem)
    latest: dict[str, Manifest] = {}
    for _, manifest in listing.found:
        known = latest.get(manifest.recording_id)
        if known is None or manifest.finalized_at > known.finalized_at:
            latest[manifest.recording_id] = manifest
    return [latest[rid] for rid in sorted(latest)]


def connect(out: str, conn_id: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views ``detections``, ``frames`` and ``recordings``."""
    storage = storage_for(out, conn_id)
    listed = manifests(out, conn_id)
    con = duckdb.connect(config=LOCKED_DOWN)
    for table in ALL_TABLES:
        parts = [
            pq.read_table(io.BytesIO(read_verified(storage, uri, sha256)), schema=SCHEMAS[table])
            for manifest in listed
            for uri, sha256 in listed_files(manifest, out, table)
        ]
        arrow = pa.concat_tables(parts) if parts else SCHEMAS[table].empty_table()
        con.register(f"_{table}", arrow)
        if table != DETECTIONS:
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}")
    # Shard files leave track_id null (tracking runs per recording, afterwards): fill it in.
    con.execute(
        "CREATE VIEW detections AS SELECT d.* REPLACE (tp.track_id AS track_id) FROM _detections d "
        "LEFT JOIN _track_points tp USING (recording_id, frame_index, det_index)"
    )
    recordings = pa.Table.from_pylist(
        [
            {
                "recording_id": m.recording_id,
                "source_uri": m.source.uri,
                "sha256": m.source.sha256,
                "duration_s": m.duration_s,
                "sampled_frames": m.totals["sampled_frames"],
                "detections": m.totals["detections"],
            }
            for m in listed
        ],
        schema=pa.schema(
            [("recording_id", pa.string()), ("source_uri", pa.string()), ("sha256", pa.string()),
             ("duration_s", pa.float64()), ("sampled_frames", pa.int64()), ("detections", pa.int64())]
        ),
    )  # fmt: skip
    con.register("recordings", recordings)
    from vigil.review.decisions import load_decisions, register

    register(con, load_decisions(out, conn_id))  # beside the analysis, never inside it
    # Raw SQL (`vigil query sql`) sees the registered tables and nothing else: no files, no
    # extensions, no Python variables, and no way to switch that back on.
    con.execute("SET lock_configuration = true")
    return con


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> Result:
    cursor = con.execute(sql, params or [])
    return Result([d[0] for d in cursor.description], cursor.fetchall())


def parse_time(value: str | float | None) -> float | datetime | None:
    """Recording time (``HH:MM:SS[.fff]``, ``MM:SS``, seconds) or wall-clock time (ISO 8601 with a
    zone, e.g. ``2024-03-01T22:10:00Z``), which filters on ``captured_at``."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if re.fullmatch(r"\d+(:\d{1,2}){0,2}(\.\d+)?", value):
        seconds = 0.0
        for part in value.split(":"):
            seconds = seconds * 60 + float(part)
        return seconds
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise ParameterError(
            f"times are HH:MM:SS(.fff), MM:SS, seconds, or ISO 8601 wall-clock with a zone; got {value!r}"
        )
    return stamp


@dataclass(frozen=True)
class Window:
    """Which recording(s) and which part of them: the filters every query shares."""

    recording: str | None = None
    start: float | datetime | None = None
    end: float | datetime | None = None

    def where(self, start_s: str, end_s: str, wall_start: str, wall_end: str) -> tuple[str, list]:
        """SQL keeping rows whose ``[start, end)`` overlaps the window."""
        clauses, args = [], []
        if self.recording:
            # The full id or its file-stem prefix, as investigators type what they see.
            clauses.append("(recording_id = ? OR recording_id LIKE ? || '-%')")
            args += [self.recording, self.recording]
        lower = ">=" if start_s == end_s else ">"  # a point at the window's start is inside it
        for bound, op, seconds_col, wall_col in ((self.start, lower, end_s, wall_end), (self.end, "<", start_s, wall_start)):
            if bound is None:
                continue
            if isinstance(bound, datetime):
                clauses.append(f"{wall_col} {op} ?")
            else:
                clauses.append(f"{seconds_col} {op} ?")
            args.append(bound)
        return (" AND ".join(clauses) or "TRUE"), args


def presence(con, window: Window = Window(), min_duration_s: float = 0.0, min_persons: int = 1) -> Result:
    """When people were present: intervals with their length, head count and tracks."""
    where, args = window.where("start_s", "end_s", "start_captured_at", "end_captured_at")
    return run_sql(con, f"""
        SELECT recording_id, interval, start_s, end_s, round(end_s - start_s, 3) AS seconds,
               start_captured_at, max_persons, frames, track_ids
        FROM presence WHERE {where} AND end_s - start_s >= ? AND max_persons >= ?
        ORDER BY recording_id, start_s""", [*args, min_duration_s, min_persons])  # fmt: skip


def tracks(con, window: Window = Window(), min_duration_s: float = 0.0, min_conf: float = 0.0) -> Result:
    """The people (tracks): when first and last seen, and their best view."""
    where, args = window.where(
        "first_s", "last_s", "first_captured_at", "first_captured_at + to_microseconds(((last_s - first_s) * 1e6)::BIGINT)"
    )
    return run_sql(con, f"""
        SELECT recording_id, track_id, first_s, last_s, round(last_s - first_s, 3) AS seconds, first_captured_at,
               frames, round(mean_confidence::DOUBLE, 3) AS mean_confidence, best_frame_index, best_pts_s
        FROM tracks WHERE {where} AND last_s - first_s >= ? AND mean_confidence >= ?
        ORDER BY recording_id, first_s""", [*args, min_duration_s, min_conf])  # fmt: skip


def events(con, window: Window = Window(), posture: str | None = None, min_duration_s: float = 0.0,
           min_score: float = 0.0, reviewed: str | None = None) -> Result:  # fmt: skip
    """Posture events: who held which posture, when, for how long, how clearly, and the current
    review decision (``reviewed``: a decision, or ``none`` for events nobody has decided on)."""
    from vigil.review.decisions import EVENT_ORDER

    where, args = window.where(
        "start_s", "end_s", "start_captured_at", "start_captured_at + to_microseconds(((end_s - start_s) * 1e6)::BIGINT)"
    )
    if posture:
        where += " AND posture = ?"
        args.append(posture)
    if reviewed:
        where += " AND coalesce(review, 'none') = ?"
        args.append(reviewed)
    return run_sql(con, f"""
        SELECT recording_id, event, track_id, posture, start_s, end_s, round(end_s - start_s, 3) AS seconds,
               start_captured_at, frames, round(score::DOUBLE, 3) AS score, rule_version, best_frame_index, review
        FROM (SELECT e.*, r.decision AS review FROM
                (SELECT *, row_number() OVER (PARTITION BY recording_id ORDER BY {EVENT_ORDER}) AS event FROM pose_events) e
              LEFT JOIN reviews r ON r.current AND r.target = 'event' AND r.recording_id = e.recording_id
                                     AND r.target_id = e.event)
        WHERE {where} AND end_s - start_s >= ? AND score >= ?
        ORDER BY recording_id, start_s, track_id""", [*args, min_duration_s, min_score])  # fmt: skip


def reviews(con, window: Window = Window(), current_only: bool = False) -> Result:
    """Review decisions, oldest first: who decided what about which track or event, and whether a
    later decision superseded it (``current``) or the rows it refers to changed since (``stale``)."""
    where, args = window.where("decided_at", "decided_at", "decided_at", "decided_at") if window.recording else ("TRUE", [])
    if current_only:
        where += " AND current"
    return run_sql(con, f"SELECT * FROM reviews WHERE {where} ORDER BY recording_id, decided_at, record_id", args)


def frames(con, window: Window = Window(), status: str | None = None, min_persons: int = 0) -> Result:
    """Sampled frames: analysed or not (status), and how many people each shows."""
    where, args = window.where("pts_s", "pts_s", "captured_at", "captured_at")
    if status:
        where += " AND status = ?"
        args.append(status)
    return run_sql(con, f"""
        SELECT recording_id, shard_index, frame_index, pts_s, captured_at, persons, status
        FROM frames WHERE {where} AND persons >= ? ORDER BY recording_id, pts_s""", [*args, min_persons])  # fmt: skip


def counts(con, window: Window = Window(), bucket_s: float = 60.0) -> Result:
    """How many people per time bucket (default: per minute): max and mean over sampled frames."""
    if bucket_s <= 0:
        raise ParameterError(f"bucket must be positive seconds, got {bucket_s}")
    where, args = window.where("pts_s", "pts_s", "captured_at", "captured_at")
    return run_sql(con, f"""
        SELECT recording_id, floor(pts_s / ?) * ? AS bucket_start_s, min(captured_at) AS captured_from,
               count(*) AS frames, count(*) FILTER (WHERE status <> 'ok') AS not_analysed,
               max(persons) AS max_persons, round(avg(persons), 2) AS mean_persons
        FROM frames WHERE {where}
        GROUP BY recording_id, bucket_start_s ORDER BY recording_id, bucket_start_s""", [bucket_s, bucket_s, *args])  # fmt: skip


def detections(con, window: Window = Window(), min_conf: float = 0.0) -> Result:
    """Every detection in the window, with its track, box and source."""
    where, args = window.where("pts_s", "pts_s", "captured_at", "captured_at")
    return run_sql(con, f"""
        SELECT recording_id, frame_index, round(pts_s, 3) AS pts_s, captured_at, det_index, track_id,
               round(confidence::DOUBLE, 3) AS confidence, round(x1::DOUBLE, 1) AS x1, round(y1::DOUBLE, 1) AS y1,
               round(x2::DOUBLE, 1) AS x2, round(y2::DOUBLE, 1) AS y2, source_uri
        FROM detections WHERE {where} AND confidence >= ?
        ORDER BY recording_id, pts_s, det_index""", [*args, min_conf])  # fmt: skip


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
