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

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.orchestration.view_guard import (
    SERVABLE,
    ManifestCache,
    artifact_headers,
    case_headers,
    content_type,
    page_headers,
    read_artifact,
)

from vigil.store.layout import REVIEW
from vigil.store.manifest import Manifest

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


def _row(m: Manifest) -> str:
    from vigil.review.render import timecode

    rid, totals = m.recording_id, m.totals
    # Each run's own files, at their own paths: a recording analysed with other settings (or
    # forced) has a row per run, and no link may resolve to another run's picture or report.
    timeline_href, report_href = _review_href(m, "timeline.png"), _review_href(m, "report.html")
    timeline = f'<img src="{_e(timeline_href)}" alt="timeline">' if timeline_href else ""
    report = f'<a href="{_e(report_href)}">report</a>' if report_href else "—"
    run = f"run {m.params_fingerprint[:12]}, finalized {m.finalized_at}"
    warnings = "".join(f"<div class=warn>{_e(w)}</div>" for w in m.warnings if isinstance(w, str))
    try:
        duration = timecode(m.duration_s)
    except (TypeError, ValueError):
        duration = "—"
    return (
        f"<tr><td><b>{_e(rid)}</b><br><small>{_e(m.source.uri)}<br>{_e(run)}</small>{warnings}</td>"
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
<h1>vigil — processed recordings</h1><p>Output: <code>{_e(out)}</code> — <a href="case">case view</a></p>
<table><tr><th>recording</th><th>duration</th><th>presence intervals</th><th>tracks</th><th>posture events</th>
<th>report</th><th>timeline</th></tr>{body}</table>{skipped}</body></html>"""
    return HTMLResponse(page, headers=page_headers(PAGE_STYLE))


@app.get("/recordings/{recording_id}/{name}")
def artifact(recording_id: str, name: str) -> Response:
    from vigil.store.storage import storage_for

    out, conn_id = _output()
    storage = storage_for(out, conn_id)
    runs = [m for m in cache.listing(storage, out).manifests if m.recording_id == recording_id]
    if len(runs) > 1:  # never guess which run's file a link meant
        raise HTTPException(status_code=409, detail=f"recording {recording_id!r} has {len(runs)} runs with other "
                                                    "settings; open the file from that run's row on the index page")
    entry = runs[0].artifacts.get(name) if runs else None
    if entry is None or not SERVABLE.match(name):  # only what a manifest lists is ever served
        raise HTTPException(status_code=404, detail=f"no {name!r} for recording {recording_id!r}")
    manifest = runs[0]
    if name == "report.html" and (href := _review_href(manifest, name)):
        return RedirectResponse("../../" + href, status_code=303)  # where its clip links resolve
    return _served(storage, out, entry, name, recording_id)


@app.get("/review/{path:path}")
def review_file(path: str) -> Response:
    """A manifest-listed review file at its own path in the output: a report served here has its
    clip links (``../../../clips/…``, relative as in the output folder) land on the clip route."""
    from vigil.store.storage import storage_for

    out, conn_id = _output()
    storage = storage_for(out, conn_id)
    for manifest in cache.listing(storage, out).manifests:
        for name, entry in manifest.artifacts.items():
            if isinstance(entry, dict) and entry.get("path") == f"{REVIEW}/{path}" and SERVABLE.match(name):
                return _served(storage, out, entry, name, manifest.recording_id)
    raise HTTPException(status_code=404, detail="no such review file")


def _review_href(manifest: Manifest, name: str) -> str | None:
    """A review file's path in the output (relative to this page's root), where it is a plain one."""
    entry = manifest.artifacts.get(name)
    path = entry.get("path") if isinstance(entry, dict) else None
    if isinstance(path, str) and path.startswith(REVIEW + "/") and ".." not in path.split("/"):
        return quote(path, safe="/=,+-._~")
    return None


def _served(storage, out: str, entry: dict, name: str, recording_id: str) -> Response:
    from vigil.errors import VigilError

    try:
        data = read_artifact(storage, out, entry)
    except VigilError as exc:
        raise HTTPException(status_code=409, detail=f"not served: {exc}") from exc
    return Response(content=data, media_type=content_type(name), headers=artifact_headers(name, recording_id))


@app.get("/case", response_class=HTMLResponse)
def case_view() -> HTMLResponse:
    """Every recording on one timeline (the ``vigil case`` page), pictures read as the artifacts are."""
    from vigil.review.case import case_data, case_html, thumbnails
    from vigil.review.case_page import PAGE_SCRIPT, PAGE_STYLE as CASE_STYLE
    from vigil.store.storage import storage_for

    out, conn_id = _output()
    storage = storage_for(out, conn_id)
    data = case_data(out, conn_id)
    pictures = thumbnails(out, data, conn_id, read=lambda entry: read_artifact(storage, out, entry))
    page = case_html(data, pictures, clip_base=".", review_url="review")
    return HTMLResponse(page, headers=case_headers(CASE_STYLE, PAGE_SCRIPT))


@app.get("/clips/{path:path}")
def clip(path: str) -> Response:
    """A clip file, only where a sealed clip record lists it and its bytes have the recorded hash."""
    from vigil.errors import VigilError
    from vigil.review.clips import load_clip_records
    from vigil.store.storage import storage_for

    out, conn_id = _output()
    storage = storage_for(out, conn_id)
    record = next((r for r in load_clip_records(out, conn_id) if r["clip_path"] == f"clips/{path}"), None)
    if record is None:
        raise HTTPException(status_code=404, detail="no such clip")
    try:
        data = read_artifact(storage, out, {"path": record["clip_path"], "sha256": record["clip_sha256"]})
    except VigilError as exc:
        raise HTTPException(status_code=409, detail=f"not served: {exc}") from exc
    name = record["clip_path"].rsplit("/", 1)[-1]
    return Response(content=data, media_type="video/mp4", headers=artifact_headers(name, record["recording_id"]))


@app.get("/review", response_class=HTMLResponse)
def review_form(recording: str, event: int | None = None, track: int | None = None) -> HTMLResponse:
    """A plain form (no script): the decision is recorded under the logged-in user's name."""
    target, number = ("event", event) if event is not None else ("track", track)
    if number is None:
        raise HTTPException(status_code=400, detail="name an event or a track")
    options = "".join(f'<option value="{d}">{d}</option>' for d in ("confirmed", "rejected", "uncertain"))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>vigil review</title>
<style>{PAGE_STYLE}</style></head><body><h1>Review {_e(target)} {_e(number)} of {_e(recording)}</h1>
<form method="post" action="review"><input type="hidden" name="recording" value="{_e(recording)}">
<input type="hidden" name="target" value="{_e(target)}"><input type="hidden" name="target_id" value="{_e(number)}">
<p><label>Decision <select name="decision">{options}</select></label></p>
<p><label>Note<br><textarea name="note" rows="4" cols="60"></textarea></label></p>
<p><button type="submit">Record the decision</button> (recorded under your Airflow user name; it never changes
the analysis, and a later decision supersedes it with the history kept)</p></form></body></html>"""
    headers = page_headers(PAGE_STYLE)
    headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace("form-action 'none'", "form-action 'self'")
    return HTMLResponse(page, headers=headers)


def require_review_access(request: Request, user=Depends(get_user)):
    """Recording a decision writes: UI viewers only read, so it takes the right to edit the DAGs'
    runs; and a cross-site form post is refused (its Origin is not this server)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    origin = request.headers.get("origin") or request.headers.get("referer") or ""
    if not origin.startswith(f"{request.url.scheme}://{request.url.netloc}"):
        raise HTTPException(status_code=403, detail="a review decision must be posted from this server's own page")
    for dag_id in view_dag_ids():
        requires_access_dag("PUT", DagAccessEntity.RUN, param_dag_id=dag_id)(request, user)
    return user


@app.post("/review", response_class=HTMLResponse)
def review_post(recording: str = Form(), target: str = Form(), target_id: int = Form(), decision: str = Form(),
                note: str = Form(""), user=Depends(require_review_access)) -> HTMLResponse:  # fmt: skip
    from vigil.errors import VigilError
    from vigil.review.decisions import record_decision

    out, conn_id = _output()
    try:
        record = record_decision(out, recording, target, target_id, decision, note, user.get_name(), conn_id)
    except VigilError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>vigil review</title>
<style>{PAGE_STYLE}</style></head><body><p>Recorded: {_e(record["decision"])} on {_e(target)} {_e(target_id)} of
{_e(record["recording_id"])} by {_e(record["reviewer"])} at {_e(record["decided_at"])}.</p>
<p><a href="case">back to the case view</a></p></body></html>"""
    return HTMLResponse(page, headers=page_headers(PAGE_STYLE))
