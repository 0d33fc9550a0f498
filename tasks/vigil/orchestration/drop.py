"""A whole drop from one trigger, however many shards it needs (issue #17).

Airflow refuses to map one task more than ``[core] max_map_length`` times (1024 by default), and
the grid view and the scheduler slow down long before that. So a drop run maps at most that many
task instances per step: each mapped ``plan`` instance fingerprints and probes a *batch* of
recordings and each mapped ``detect`` instance analyses a *batch* of shards. While the drop fits,
a batch is one recording or one shard (exactly as before); past that, batches grow just enough
to stay within the limit. A batch holds the shards of one recording where the limit allows, so a
failing batch costs that recording alone; shards are exactly-once by key, so a retried batch
skips the shards it already published.

Pure functions over the contracts' ``to_dict()`` descriptors: the Airflow tasks call them.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

FINALIZED, FAILED, LEFT_FOR_LATER = "finalized", "failed", "left for later"


def even_batches(items: list, limit: int) -> list[list]:
    """``items`` in order, cut into at most ``limit`` batches of near-equal size (one item each
    while they fit)."""
    if not items:
        return []
    size = math.ceil(len(items) / max(1, limit))
    return [items[i : i + size] for i in range(0, len(items), size)]


def shard_batches(shards: list[dict], limit: int) -> list[list[dict]]:
    """Shard descriptors grouped into at most ``limit`` batches, each of one recording's shards
    where possible (a failure then costs one recording), whole recordings together otherwise."""
    by_recording: dict[str, list[dict]] = {}
    for shard in shards:
        by_recording.setdefault(_recording_of(shard), []).append(shard)
    groups = list(by_recording.values())
    if len(groups) <= limit:
        size = 1  # the smallest batch size that keeps every recording's batches within the limit
        while sum(math.ceil(len(g) / size) for g in groups) > limit:
            size += 1
        return [g[i : i + size] for g in groups for i in range(0, len(g), size)]
    # More recordings than the limit: whole recordings per batch, the fullest batch filled last.
    batches: list[list[dict]] = [[] for _ in range(limit)]
    for group in sorted(groups, key=len, reverse=True):
        min(batches, key=len).extend(group)
    return [b for b in batches if b]


def _recording_of(shard: dict) -> str:
    return f"{shard['plan']['recording_id']}/{shard['plan'].get('generation') or ''}"


def gather(plans: list[dict], recordings: list[dict], cap: NightlyCap | None, limit: int) -> tuple[dict, list[dict], list[dict]]:
    """The plan tasks' outputs (``{"shards", "failed"}`` each) joined: the shard batches per device
    (``{"cpu": [...], "cuda": [...]}``, at most ``limit`` each), the recordings that failed (those
    that failed to plan, whose plan task gave no answer, or that repeat another's name and content)
    and those the nightly ``cap`` leaves for later."""
    from vigil.store.contracts import ShardTask

    failed = [f for p in plans for f in p["failed"]]
    by_uri: dict[str, list[ShardTask]] = {}
    for shard in (ShardTask.from_dict(s) for p in plans for s in p["shards"]):
        by_uri.setdefault(shard.plan.source.uri, []).append(shard)
    answered = set(by_uri) | {f["uri"] for f in failed}
    failed += [{"uri": r["uri"], "error": "its plan task failed; see that task's log"}
               for r in recordings if r["uri"] not in answered]  # fmt: skip
    first_with_id: dict[str, str] = {}  # same name and content in two folders: one recording, analysed once
    for uri in sorted(by_uri):
        recording_id = by_uri[uri][0].plan.recording_id
        if first_with_id.setdefault(recording_id, uri) != uri:
            failed.append({"uri": uri, "error": f"same file name and content as {first_with_id[recording_id]}, "
                                                f"analysed as {recording_id}; not analysed twice"})  # fmt: skip
            del by_uri[uri]
    left: list[dict] = []
    if cap is not None:
        modified = {r["uri"]: r.get("last_modified") for r in recordings}
        hours = [{"uri": uri, "last_modified": modified.get(uri), "duration_s": float(group[0].plan.probe.duration)}
                 for uri, group in by_uri.items()]  # fmt: skip
        taken, left = within_cap(hours, cap)
        by_uri = {uri: group for uri, group in by_uri.items() if uri in taken}
        if left:
            log.warning("nightly cap: %d recordings (%.1f h) left for a later night: %s", len(left),
                        sum(p["duration_s"] for p in left) / 3600, ", ".join(p["uri"] for p in left))  # fmt: skip
    kept = [s for uri in sorted(by_uri) for s in by_uri[uri]]
    batches = {
        device: shard_batches([s.to_dict() for s in kept if s.plan.params.device.split(":")[0] == device], limit)
        for device in ("cpu", "cuda")
    }
    return batches, failed, left


@dataclass(frozen=True)
class NightlyCap:
    """How much of the backlog one night takes: ``VIGIL_NIGHTLY_MAX_HOURS`` of recording time
    (unset or 0: everything), ``VIGIL_NIGHTLY_ORDER`` ``oldest`` (default) or ``newest`` first,
    by the object's last-modified time."""

    max_hours: float | None
    order: str

    @classmethod
    def from_environment(cls) -> NightlyCap:
        from vigil.errors import ParameterError

        raw, order = os.environ.get("VIGIL_NIGHTLY_MAX_HOURS", ""), os.environ.get("VIGIL_NIGHTLY_ORDER", "oldest")
        if order not in ("oldest", "newest"):
            raise ParameterError(f"VIGIL_NIGHTLY_ORDER is {order!r}; set it to 'oldest' or 'newest'")
        try:
            hours = float(raw) if raw.strip() else None
        except ValueError:
            raise ParameterError(f"VIGIL_NIGHTLY_MAX_HOURS is {raw!r}; set it to a number of hours") from None
        if hours is not None and hours < 0:
            raise ParameterError(f"VIGIL_NIGHTLY_MAX_HOURS is {hours}; set it to 0 (no cap) or more")
        return cls(hours or None, order)


def order_recordings(recordings: list[dict], order: str) -> list[dict]:
    """Discovered objects (``ObjectInfo`` as dicts), oldest or newest first; URI breaks ties."""
    ordered = sorted(recordings, key=lambda r: (r.get("last_modified") or "", r["uri"]))
    return ordered[::-1] if order == "newest" else ordered


def within_cap(plans: list[dict], cap: NightlyCap) -> tuple[set[str], list[dict]]:
    """Which planned recordings (``{"uri", "last_modified", "duration_s"}``) tonight takes, in the
    cap's order, until their hours reach the cap (the first always goes, however long), and the
    rest, left for a later night."""
    ordered = order_recordings(plans, cap.order)
    if cap.max_hours is None:
        return {p["uri"] for p in ordered}, []
    taken, left, seconds = set(), [], 0.0
    for planned in ordered:
        if taken and seconds + planned["duration_s"] > cap.max_hours * 3600:
            left.append(planned)
            continue
        taken.add(planned["uri"])
        seconds += planned["duration_s"]
    return taken, left


def preselect(recordings: list[dict], cap: NightlyCap, duration_of) -> tuple[list[dict], list[dict]]:
    """Before planning: the discovered recordings (``ObjectInfo`` dicts) tonight plans, in the
    cap's order, until their container durations (``duration_of(recording)``, seconds, None when
    the container does not say) reach the cap; and the rest, left for a later night unread. Only
    the recordings taken are asked for their duration, so a large backlog is not read every night
    to plan the few it takes. ``within_cap`` then applies the cap to the probed durations."""
    if cap.max_hours is None:
        return recordings, []
    ordered = order_recordings(recordings, cap.order)
    seconds = 0.0
    for position, recording in enumerate(ordered):
        if seconds >= cap.max_hours * 3600:
            left = [{"uri": r["uri"], "last_modified": r.get("last_modified"), "duration_s": None} for r in ordered[position:]]
            log.warning("nightly cap: %d recordings left for a later night without being read: %s", len(left),
                        ", ".join(r["uri"] for r in left))  # fmt: skip
            return ordered[:position], left
        seconds += duration_of(recording) or 0.0  # unknown: planned, and the probe's duration counts
    return ordered, []


def drop_summary(discovered: list[str], summaries: list[dict], problems: list[dict], left: list[dict]) -> dict:
    """Every recording of the drop: finalized (with its manifest), failed (with why), or left for
    a later night; and the counts."""
    rows: dict[str, dict] = {uri: {"uri": uri, "status": FAILED, "error": "no result; see the task logs"} for uri in discovered}
    for s in summaries:
        rows[s["source_uri"]] = {"uri": s["source_uri"], "status": FINALIZED, "recording_id": s["recording_id"],
                                 "manifest_uri": s["manifest_uri"], "duration_s": s.get("duration_s")}  # fmt: skip
    for p in problems:
        rows[p["uri"]] = {"uri": p["uri"], "status": FAILED, "error": p["error"]}
    for planned in left:
        rows[planned["uri"]] = {"uri": planned["uri"], "status": LEFT_FOR_LATER, "duration_s": planned["duration_s"]}
    recordings = [rows[uri] for uri in sorted(rows)]
    counts = {status: sum(r["status"] == status for r in recordings) for status in (FINALIZED, FAILED, LEFT_FOR_LATER)}
    return {"recordings": recordings, "counts": counts}


def log_summary(summary: dict) -> None:
    """One line per recording in the task log, failures with their reason."""
    log.info("drop: %s", ", ".join(f"{n} {status}" for status, n in summary["counts"].items()))
    for row in summary["recordings"]:
        hours = row.get("duration_s")
        detail = row.get("manifest_uri") or row.get("error") or (f"{hours / 3600:.2f} h" if hours is not None else "not read")
        (log.error if row["status"] == FAILED else log.info)("%-15s %s  %s", row["status"], row["uri"], detail)
