"""The case view: every recording of an output on one wall-clock timeline, one lane per camera.

One self-contained HTML file (data and thumbnails inlined, one hashed script, a strict CSP), so it
opens offline like the report. Lanes show presence (shaded by head count) and posture events;
ranges that were not analysed are hatched. Clicking an event shows its thumbnail (skeleton
drawn), its review decision and its clip. Recordings whose start is unknown cannot be placed on
the wall clock: they get their own relative axis below, and the page says so.

The timeline is drawn on a canvas from compact arrays, so 100 recordings x 10 hours (tens of
thousands of intervals) stay one small page: measured in ``bench/case_view.py``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
from datetime import datetime

from vigil.review.case_page import PAGE_SCRIPT, PAGE_STYLE

THUMBNAIL_LIMIT = 400  # inlined event pictures per page; the rest link to their recording's report


def case_data(out: str, conn_id: str | None = None) -> dict:
    """Everything the page draws, from the manifest-listed outputs (and clip records, reviews)."""
    from vigil.review import query
    from vigil.review.clips import covering_clip, load_clip_records
    from vigil.review.decisions import EVENT_ORDER

    con = query.connect(out, conn_id)
    clips = load_clip_records(out, conn_id)
    lanes = []
    for manifest in query.manifests(out, conn_id):
        rid = manifest.recording_id
        presence = con.execute(
            "SELECT start_s, end_s, max_persons FROM presence WHERE recording_id = ? ORDER BY start_s", [rid]
        ).fetchall()
        events = con.execute(f"""
            SELECT event, posture, track_id, start_s, end_s, score, review FROM (
              SELECT e.*, r.decision AS review FROM
                (SELECT *, row_number() OVER (ORDER BY {EVENT_ORDER}) AS event FROM pose_events WHERE recording_id = ?) e
              LEFT JOIN reviews r ON r.current AND r.target = 'event' AND r.recording_id = e.recording_id
                                     AND r.target_id = e.event) ORDER BY event""", [rid]).fetchall()  # fmt: skip
        lanes.append({
            "id": rid,
            "camera": manifest.source.uri.rsplit("/", 1)[-1],
            "start": _epoch_ms(manifest.recording_start),
            "duration": manifest.duration_s,
            "gaps": [[a, b, s] for a, b, s in manifest.coverage if s not in ("ok", "static")],
            "presence": [[round(a, 3), round(b, 3), n] for a, b, n in presence],
            "events": [[n, p, t, round(a, 3), round(b, 3), round(float(sc), 2), rv,
                        _pair(covering_clip(clips, rid, a, min(b, manifest.duration_s)))]
                       for n, p, t, a, b, sc, rv in events],  # fmt: skip
        })  # fmt: skip
    return {"out": out, "lanes": lanes, "similar": _similar_tracks(con, lanes)}


def _similar_tracks(con, lanes: list[dict], top: int = 5) -> dict[str, list]:
    """For each track with an event: the ``top`` tracks that look most like it (find this person)."""
    from vigil.errors import ParameterError
    from vigil.review.similar import similar

    found = {}
    for lane in lanes:
        for track in sorted({e[2] for e in lane["events"] if e[2] is not None}):
            try:
                ranked = similar(con, lane["id"], int(track), top)
            except ParameterError:  # no descriptor (older output, unreadable source at finalize)
                continue
            found[f"{lane['id']}/{track}"] = [[r[0], r[1], r[2], round(r[3], 1)] for r in ranked.rows]
    return found


def thumbnails(out: str, data: dict, conn_id: str | None = None, limit: int = THUMBNAIL_LIMIT,
               read=None) -> dict[str, str]:  # fmt: skip
    """``{"<recording>/<event>": data URI}`` of the stored event pictures, each checked against its
    manifest's SHA-256 before it is inlined; the highest-scoring events first, up to ``limit``.
    ``read(entry)``: how to read a manifest entry's bytes (the UI passes its symlink-refusing reader)."""
    from vigil.errors import IntegrityError
    from vigil.review import query
    from vigil.store.storage import storage_for
    from vigil.uri import join_uri

    storage = storage_for(out, conn_id)
    artifacts = {m.recording_id: m.artifacts for m in query.manifests(out, conn_id)}
    ranked = sorted(((e[5], lane["id"], e[0]) for lane in data["lanes"] for e in lane["events"]), reverse=True)
    pictures = {}
    for _, rid, number in ranked[:limit]:
        entry = artifacts[rid].get(f"event-{number:03d}.jpg")
        if not entry:
            continue
        blob = read(entry) if read else storage.read_bytes(join_uri(out, entry["path"]))
        if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            raise IntegrityError(f"{entry['path']}: SHA-256 differs from the manifest of {rid}; run vigil verify")
        pictures[f"{rid}/{number}"] = "data:image/jpeg;base64," + base64.b64encode(blob).decode()
    return pictures


def case_html(data: dict, pictures: dict[str, str], clip_base: str | None, review_url: str | None = None) -> str:
    """The page. ``clip_base``: where clip paths resolve from the page (None: clips are listed, not
    played); ``review_url``: where a review decision can be recorded (the Airflow page only)."""
    payload = json.dumps({**data, "pictures": pictures, "clipBase": clip_base, "reviewUrl": review_url},
                         separators=(",", ":"))  # fmt: skip
    # JSON inside <script type=application/json>: '<' is escaped so no value can close the element.
    payload = payload.replace("<", "\\u003c")
    csp = (
        "default-src 'none'; img-src data:; media-src file: 'self'; base-uri 'none'; form-action 'none'; "
        f"style-src '{_sha256(PAGE_STYLE)}'; script-src '{_sha256(PAGE_SCRIPT)}'"
    )
    absolute = sum(1 for lane in data["lanes"] if lane["start"] is not None)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>vigil case view — {html.escape(data['out'])}</title>
<style>{PAGE_STYLE}</style></head><body>
<h1>vigil case view</h1>
<p class=meta>{html.escape(data['out'])} — {len(data['lanes'])} recordings, {absolute} on the wall clock (UTC).
Hatched: not analysed (undecodable or no frame). Events are leads to review, not findings.</p>
<div id=timeline></div>
<div id=details><p class=none>Click an event to see its picture, review decision and clip.</p></div>
<script type="application/json" id=case-data>{payload}</script>
<script>{PAGE_SCRIPT}</script>
</body></html>
"""


def write_case(out: str, html_path: str, conn_id: str | None = None) -> str:
    """``vigil case``: write the page; clips play from the page when the output is a local folder."""
    from vigil.uri import parse_uri

    data = case_data(out, conn_id)
    parsed = parse_uri(out)
    target = os.path.abspath(html_path)
    clip_base = os.path.relpath(parsed.key, os.path.dirname(target)) if parsed.scheme == "file" else None
    page = case_html(data, thumbnails(out, data, conn_id), clip_base)
    with open(target, "w", encoding="utf-8") as handle:
        handle.write(page)
    return target


def _pair(record: dict | None) -> list | None:
    return [record["clip_path"], record["clip_sha256"]] if record else None


def _epoch_ms(recording_start: str | None) -> float | None:
    if not recording_start:
        return None
    return datetime.fromisoformat(recording_start.replace("Z", "+00:00")).timestamp() * 1000


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
