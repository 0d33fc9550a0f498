"""The "Vigil recordings" page inside Airflow's UI: processed recordings, their presence timeline,
and a link to each report — where the operator who triggered a drop sees its results.

Served by the api-server through the plugin in ``plugins/vigil_plugin.py``; every route needs a
logged-in Airflow user. It reads the output location of the deployment (``VIGIL_OUTPUT_URI``,
with ``VIGIL_S3_CONN_ID``) and serves only files that a manifest lists.
"""

from __future__ import annotations

import html
import os

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

try:  # the api-server's own authentication: a valid Airflow session token (cookie or header)
    from airflow.api_fastapi.core_api.security import get_user
except ImportError:  # pragma: no cover - Airflow is a dependency

    def get_user():
        raise HTTPException(status_code=401, detail="authentication unavailable")


CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".html": "text/html; charset=utf-8"}

app = FastAPI(title="vigil recordings", dependencies=[Depends(get_user)])


def _output() -> tuple[str, str | None]:
    out = os.environ.get("VIGIL_OUTPUT_URI")
    if not out:
        raise HTTPException(status_code=503, detail="VIGIL_OUTPUT_URI is not set on the api-server")
    return out, os.environ.get("VIGIL_S3_CONN_ID") or None


@app.get("/", response_class=HTMLResponse)
def recordings() -> str:
    from vigil.review.query import manifests
    from vigil.review.render import timecode

    out, conn_id = _output()
    rows = []
    for m in manifests(out, conn_id):
        rid = html.escape(m["recording_id"])
        totals = m["totals"]
        artifacts = m.get("artifacts", {})
        timeline = f'<img src="recordings/{rid}/timeline.png" alt="timeline">' if "timeline.png" in artifacts else ""
        report = f'<a href="recordings/{rid}/report.html">report</a>' if "report.html" in artifacts else "—"
        warnings = "".join(f"<div class=warn>{html.escape(w)}</div>" for w in m.get("warnings", []))
        rows.append(
            f"<tr><td><b>{rid}</b><br><small>{html.escape(m['source']['uri'])}</small>{warnings}</td>"
            f"<td>{timecode(m['duration_s'])}</td><td>{totals.get('presence_intervals', '—')}</td>"
            f"<td>{totals.get('tracks', '—')}</td><td>{totals.get('pose_events', '—')}</td>"
            f"<td>{report}</td><td>{timeline}</td></tr>"
        )
    body = "".join(rows) or "<tr><td colspan=7>No processed recordings yet.</td></tr>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>vigil recordings</title>
<style>body{{font:14px system-ui,sans-serif;margin:16px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}} img{{width:640px}}
.warn{{color:#a60;font-size:12px}}</style></head><body>
<h1>vigil — processed recordings</h1><p>Output: <code>{html.escape(out)}</code></p>
<table><tr><th>recording</th><th>duration</th><th>presence intervals</th><th>tracks</th><th>posture events</th>
<th>report</th><th>timeline</th></tr>{body}</table></body></html>"""


@app.get("/recordings/{recording_id}/{name}")
def artifact(recording_id: str, name: str) -> Response:
    from vigil.review.query import manifests
    from vigil.store.storage import storage_for
    from vigil.uri import join_uri

    out, conn_id = _output()
    manifest = next((m for m in manifests(out, conn_id) if m["recording_id"] == recording_id), None)
    entry = (manifest or {}).get("artifacts", {}).get(name)
    if entry is None:  # only what a manifest lists is ever served
        raise HTTPException(status_code=404, detail=f"no {name!r} for recording {recording_id!r}")
    data = storage_for(out, conn_id).read_bytes(join_uri(out, entry["path"]))
    return Response(content=data, media_type=CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream"))
