"""The "Vigil recordings" page inside Airflow's UI: processed recordings, their presence timeline,
and a link to each report — where the operator who triggered a drop sees its results.

Served by the api-server through the plugin in ``plugins/vigil_plugin.py``. Every route needs a
logged-in Airflow user who may read the runs of the DAGs that write the output
(``VIGIL_VIEW_DAG_IDS``, default ``vigil_process,vigil_nightly``), decided by Airflow's own auth
manager. It reads the output location of the deployment (``VIGIL_OUTPUT_URI``, with
``VIGIL_S3_CONN_ID``) and serves only files that a manifest lists, with the hash it lists
(see ``view_guard``).
"""

from __future__ import annotations

import html
import os
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from vigil.orchestration.view_guard import (
    SERVABLE,
    ManifestCache,
    artifact_headers,
    content_type,
    page_headers,
    read_artifact,
)

try:  # the api-server's own authentication: a valid Airflow session token (cookie or header)
    from airflow.api_fastapi.core_api.security import get_user
except ImportError:  # pragma: no cover - Airflow is a dependency

    def get_user():
        raise HTTPException(status_code=401, detail="authentication unavailable")


DEFAULT_VIEW_DAG_IDS = "vigil_process,vigil_nightly"
PAGE_STYLE = """
body{font:14px system-ui,sans-serif;margin:16px} table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left} img{width:640px}
.warn{color:#a60;font-size:12px}
"""


def view_dag_ids() -> list[str]:
    return [d.strip() for d in os.environ.get("VIGIL_VIEW_DAG_IDS", DEFAULT_VIEW_DAG_IDS).split(",") if d.strip()]


def require_output_access(request: Request, user=Depends(get_user)) -> None:
    """Logged in is not enough: the user must be allowed to read the runs of every DAG that writes
    this output (Airflow's ``requires_access_dag``, so any auth manager and its teams decide)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    for dag_id in view_dag_ids():
        requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=dag_id)(request, user)


app = FastAPI(title="vigil recordings", dependencies=[Depends(require_output_access)])
cache = ManifestCache()


def _output() -> tuple[str, str | None]:
    out = os.environ.get("VIGIL_OUTPUT_URI")
    if not out:
        raise HTTPException(status_code=503, detail="VIGIL_OUTPUT_URI is not set on the api-server")
    return out, os.environ.get("VIGIL_S3_CONN_ID") or None


def _e(value) -> str:
    return html.escape(str(value if value is not None else "—"), quote=True)


def _row(m: dict) -> str:
    from vigil.review.render import timecode

    rid, totals, artifacts = m["recording_id"], m["totals"], m["artifacts"]
    base = f"recordings/{quote(rid, safe='')}"
    timeline = f'<img src="{_e(base)}/timeline.png" alt="timeline">' if "timeline.png" in artifacts else ""
    report = f'<a href="{_e(base)}/report.html">report</a>' if "report.html" in artifacts else "—"
    warnings = "".join(f"<div class=warn>{_e(w)}</div>" for w in m.get("warnings", []) if isinstance(w, str))
    try:
        duration = timecode(float(m.get("duration_s")))
    except (TypeError, ValueError):
        duration = "—"
    return (
        f"<tr><td><b>{_e(rid)}</b><br><small>{_e(m['source']['uri'])}</small>{warnings}</td>"
        f"<td>{_e(duration)}</td><td>{_e(totals.get('presence_intervals'))}</td>"
        f"<td>{_e(totals.get('tracks'))}</td><td>{_e(totals.get('pose_events'))}</td>"
        f"<td>{report}</td><td>{timeline}</td></tr>"
    )


@app.get("/", response_class=HTMLResponse)
def recordings() -> HTMLResponse:
    from vigil.store.storage import storage_for

    out, conn_id = _output()
    listing = cache.listing(storage_for(out, conn_id), out)
    body = "".join(_row(m) for m in listing.manifests) or "<tr><td colspan=7>No processed recordings yet.</td></tr>"
    skipped = "".join(f"<li><code>{_e(uri)}</code>: {_e(why)}</li>" for uri, why in listing.problems)
    if skipped:
        skipped = f"<h2>Manifests that could not be read (not shown; run <code>vigil verify</code>)</h2><ul class=warn>{skipped}</ul>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>vigil recordings</title>
<style>{PAGE_STYLE}</style></head><body>
<h1>vigil — processed recordings</h1><p>Output: <code>{_e(out)}</code></p>
<table><tr><th>recording</th><th>duration</th><th>presence intervals</th><th>tracks</th><th>posture events</th>
<th>report</th><th>timeline</th></tr>{body}</table>{skipped}</body></html>"""
    return HTMLResponse(page, headers=page_headers(PAGE_STYLE))


@app.get("/recordings/{recording_id}/{name}")
def artifact(recording_id: str, name: str) -> Response:
    from vigil.errors import VigilError
    from vigil.store.storage import storage_for

    out, conn_id = _output()
    storage = storage_for(out, conn_id)
    manifest = next((m for m in cache.listing(storage, out).manifests if m["recording_id"] == recording_id), None)
    entry = (manifest or {}).get("artifacts", {}).get(name)
    if entry is None or not SERVABLE.match(name):  # only what a manifest lists is ever served
        raise HTTPException(status_code=404, detail=f"no {name!r} for recording {recording_id!r}")
    try:
        data = read_artifact(storage, out, entry)
    except VigilError as exc:
        raise HTTPException(status_code=409, detail=f"not served: {exc}") from exc
    return Response(content=data, media_type=content_type(name), headers=artifact_headers(name, recording_id))
