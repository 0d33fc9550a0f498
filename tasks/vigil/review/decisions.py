"""Review decisions: an investigator confirms, rejects or doubts a track or a posture event.

Decisions live beside the analysis, never inside it: each is one sealed JSON record (self-hashed
like a manifest) under ``OUT/reviews/recording_id=…/``, created with a conditional write and never
changed, and signed, entered in the ledger and timestamped exactly as a manifest is (so a decision
rewritten, forged or deleted fails ``vigil verify --trust``). A later decision on the same target
supersedes the earlier one; the history stays. Each record carries the SHA-256 of the detection
rows it refers to, so a decision made on rows that a re-analysis has since changed shows up as
``stale`` instead of silently applying to other rows.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone

from vigil.errors import IntegrityError, ObjectNotFound, ParameterError
from vigil.store.custody import publish_sealed
from vigil.store.layout import REVIEWS, partition
from vigil.store.manifest import load_sealed
from vigil.store.storage import storage_for
from vigil.store.vouched import vouched_records
from vigil.uri import join_uri

DECISIONS = ("confirmed", "rejected", "uncertain")
TARGETS = ("track", "event")
RECORD_FORMAT = "review-1"
# Events have no id of their own: they are numbered per recording in this order (vigil query events).
EVENT_ORDER = "start_s, track_id, posture"
COLUMNS = ("recording_id", "target", "target_id", "decision", "note", "reviewer", "decided_at", "rows_sha256",
           "record_id", "current", "stale")  # fmt: skip


def record_decision(out: str, recording: str, target: str, target_id: int, decision: str, note: str = "",
                    reviewer: str = "", conn_id: str | None = None, extra: dict | None = None) -> dict:  # fmt: skip
    """Check the target exists, hash the rows it refers to, and publish the decision.

    A negative track id names a person the analysis did not find (one a reviewer added, e.g. in
    CVAT): it has no rows. ``extra`` adds fields to the record (e.g. a CVAT import's attachment).
    """
    from vigil.review import query

    if target not in TARGETS:
        raise ParameterError(f"review target must be one of {TARGETS}, got {target!r}")
    if decision not in DECISIONS:
        raise ParameterError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if not reviewer.strip():
        raise ParameterError("a decision needs a reviewer (--reviewer NAME)")
    con = query.connect(out, conn_id)
    recording_id = _one_recording(con, recording)
    rows = target_rows(con, recording_id, target, int(target_id))
    if not rows and not (target == "track" and int(target_id) < 0):
        raise ParameterError(f"{recording_id} has no {target} {target_id} (see vigil query {target}s)")
    now = datetime.now(timezone.utc)
    record = {
        "format": RECORD_FORMAT,
        "record_id": f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}",
        "recording_id": recording_id,
        "target": target,
        "target_id": int(target_id),
        "decision": decision,
        "note": note,
        "reviewer": reviewer,
        "decided_at": now.isoformat(),
        "rows_sha256": rows_sha256(rows),
        **{k: v for k, v in (extra or {}).items() if k not in COLUMNS and k not in ("format", "ledger")},
    }
    uri = join_uri(out, REVIEWS, partition(recording_id), f"{record['record_id']}.json")
    if publish_sealed(storage_for(out, conn_id), out, uri, record, if_absent=True) is None:
        raise IntegrityError(f"{uri} exists already; decisions are never overwritten (try again)")
    return record


def load_decisions(out: str, conn_id: str | None = None) -> list[dict]:
    """Every decision under ``out`` that the ledger vouches for (store/vouched.py), oldest first; an
    altered record is an error naming it."""
    records = vouched_records(storage_for(out, conn_id), out, join_uri(out, REVIEWS),
                              lambda r: r.get("format") == RECORD_FORMAT)  # not the attachments beside them  # fmt: skip
    return sorted(records, key=lambda r: (r["decided_at"], r["record_id"]))


def verify_decisions(out: str, conn_id: str | None = None) -> list[str]:
    """Problems with review records (altered or unreadable); empty when all are intact."""
    storage = storage_for(out, conn_id)
    problems = []
    for info in storage.list(join_uri(out, REVIEWS)):
        if not info.uri.endswith(".json"):
            continue  # signatures and timestamp tokens beside a decision: store.custody checks them
        try:
            record = load_sealed(storage.read_bytes(info.uri), info.uri)
        except IntegrityError as exc:
            problems.append(str(exc))
            continue
        attachment = record.get("attachment") if record.get("format") == RECORD_FORMAT else None
        if attachment:  # e.g. the corrected geometry of a CVAT import: must be the very bytes decided on
            uri = join_uri(out, attachment["path"])
            try:
                actual = hashlib.sha256(storage.read_bytes(uri)).hexdigest()
            except ObjectNotFound:
                actual = "missing"
            if actual != attachment["sha256"]:
                problems.append(f"{uri}: attachment of {info.uri} is {actual}, the record says {attachment['sha256']}")
    return problems


def register(con, records: list[dict]) -> None:
    """Table ``reviews`` in a query connection: every decision, with ``current`` (not superseded)
    and ``stale`` (the rows it refers to have changed since)."""
    latest = {(r["recording_id"], r["target"], r["target_id"]): r["record_id"] for r in records}
    rows = []
    for r in records:
        now = rows_sha256(target_rows(con, r["recording_id"], r["target"], r["target_id"]))
        current = latest[(r["recording_id"], r["target"], r["target_id"])] == r["record_id"]
        rows.append((*(r[c] for c in COLUMNS[:-2]), current, now != r["rows_sha256"]))
    con.execute(
        "CREATE TABLE reviews (recording_id VARCHAR, target VARCHAR, target_id BIGINT, decision VARCHAR, note VARCHAR,"
        " reviewer VARCHAR, decided_at VARCHAR, rows_sha256 VARCHAR, record_id VARCHAR, current BOOLEAN, stale BOOLEAN)"
    )
    if rows:
        con.executemany(f"INSERT INTO reviews VALUES ({', '.join('?' * len(COLUMNS))})", rows)


def target_rows(con, recording_id: str, target: str, target_id: int) -> list[tuple]:
    """The analysis rows a decision is about: a track's detections, or one posture event."""
    if target == "track":
        sql = """SELECT frame_index, det_index, confidence, x1, y1, x2, y2 FROM detections
                 WHERE recording_id = ? AND track_id = ? ORDER BY frame_index, det_index"""
    else:
        sql = f"""SELECT * EXCLUDE (event) FROM (SELECT *, row_number() OVER (ORDER BY {EVENT_ORDER}) AS event
                  FROM pose_events WHERE recording_id = ?) WHERE event = ?"""
    return con.execute(sql, [recording_id, target_id]).fetchall()


def rows_sha256(rows: list[tuple]) -> str:
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()


def _one_recording(con, recording: str) -> str:
    found = [r for (r,) in con.execute(
        "SELECT recording_id FROM recordings WHERE recording_id = ? OR recording_id LIKE ? || '-%'", [recording, recording]
    ).fetchall()]  # fmt: skip
    if len(found) != 1:
        raise ParameterError(f"recording {recording!r} must name exactly one recording; matches: {', '.join(found) or 'none'}")
    return found[0]
