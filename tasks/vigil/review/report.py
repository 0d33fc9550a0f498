"""One self-contained HTML page per recording (images inlined): it opens offline, anywhere.

Every value is escaped: manifest fields and table cells come from files anyone with write access
to the output could have shaped. Only the markup this module builds itself (``Markup``) is
inserted as is. The page needs no script; its one style block is ``STYLE``, whose hash the UI
puts in its Content-Security-Policy.
"""

from __future__ import annotations

import base64
import hashlib
import html
from urllib.parse import quote

from vigil.review.render import CONTACT_SHEET_LIMIT, timecode
from vigil.store.manifest import Manifest


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1280px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; } dt { color: #666; }
code, dd { font-family: ui-monospace, monospace; font-size: 12px; } img { max-width: 100%; }
td img { width: 320px; } .none { color: #888; } .warn { color: #a60; }
"""


def csp_hash(text: str) -> str:
    """A CSP source expression allowing exactly this inline block (``'sha256-…'``)."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


class Markup(str):
    """HTML this module built itself from escaped parts; everything else is escaped on the way in."""


def _e(value) -> str:
    return html.escape(str(value if value is not None else ""), quote=True)


def _img(data: bytes | None, mime: str, alt: str) -> Markup:
    if not data:
        return Markup(f"<p class=none>({_e(alt)}: nothing to show)</p>")
    return Markup(f'<img alt="{_e(alt)}" src="data:{mime};base64,{base64.b64encode(data).decode()}">')


def _clip_cell(record: dict | None) -> Markup | str:
    """A link to a clip (relative to the report, which lies three folders below the output) and
    its SHA-256; a dash where none was cut (``vigil clip`` cuts one on demand)."""
    if not record:
        return "—"
    href = "../../../" + quote(record["clip_path"], safe="/=,+-._~")
    return Markup(f'<a href="{_e(href)}">{_e(timecode(record["actual"]["start_s"]))} – '
                  f'{_e(timecode(record["actual"]["end_s"]))}</a><br><code>{_e(record["clip_sha256"][:16])}…</code>')


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, Markup) else _e(c)}</td>" for c in row) + "</tr>"
                   for row in rows)  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body or '<tr><td colspan=9>none</td></tr>'}</tbody></table>"


def report_html(manifest: Manifest, presence: list[dict], events: list[dict], tracks: list[dict],
                timeline: bytes, contact_sheet: bytes | None, thumbnails: list[bytes], blurred: bool,
                clips: dict[str, dict] | None = None, reviews: dict[str, str] | None = None) -> str:  # fmt: skip
    """The page: provenance, coverage, timeline, presence intervals, events with thumbnails, tracks."""
    source = manifest.source
    wall = lambda value: value.isoformat() if hasattr(value, "isoformat") else (value or "")  # noqa: E731
    coverage = [[f"{timecode(a)} – {timecode(b)}", s] for a, b, s in manifest.coverage]
    presence_rows = [[p["interval"], timecode(p["start_s"]), timecode(p["end_s"]), f"{p['end_s'] - p['start_s']:.1f} s",
                      wall(p["start_captured_at"]), p["max_persons"], ", ".join(map(str, p["track_ids"])),
                      _clip_cell((clips or {}).get(f"presence-{p['interval']}"))]
                     for p in presence]  # fmt: skip
    event_rows = [[_img(thumb, "image/jpeg", e["posture"]), e["posture"], e["track_id"], timecode(e["start_s"]),
                   timecode(e["end_s"]), wall(e["start_captured_at"]), e["frames"], f"{e['score']:.2f}", e["rule_version"],
                   _clip_cell((clips or {}).get(f"event-{number}")), (reviews or {}).get(f"event-{number}", "—")]
                  for number, (e, thumb) in enumerate(zip(events, thumbnails), 1)]  # fmt: skip
    track_rows = [[t["track_id"], timecode(t["first_s"]), timecode(t["last_s"]), t["frames"],
                   f"{t['mean_confidence']:.2f}", timecode(t["best_pts_s"]),
                   (reviews or {}).get(f"track-{t['track_id']}", "—")] for t in tracks]  # fmt: skip
    warnings = "".join(f"<li>{_e(w)}</li>" for w in manifest.warnings)
    params, model = manifest.params, manifest.model
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vigil report — {_e(manifest.recording_id)}</title>
<style>{STYLE}</style></head><body>
<h1>vigil — {_e(manifest.recording_id)}</h1>
<dl>
<dt>source</dt><dd>{_e(source.uri)}</dd>
<dt>SHA-256</dt><dd>{_e(source.sha256)}</dd>
<dt>size / ETag / version</dt><dd>{_e(source.size)} bytes / {_e(source.etag or '—')} / {_e(source.version_id or '—')}</dd>
<dt>duration</dt><dd>{_e(timecode(manifest.duration_s))} ({_e(manifest.frame_count)} frames)</dd>
<dt>recording start</dt><dd>{_e(manifest.recording_start or 'unknown')}</dd>
<dt>sampling</dt><dd>{_e(params['sample_fps'])} frames/s, shards of {_e(params['shard_seconds'])} s</dd>
<dt>model</dt><dd>{_e(model['name'])} {_e(model['sha256'])}</dd>
<dt>runtime</dt><dd>{_e(', '.join(manifest.runtimes))}; vigil {_e(manifest.vigil_version)}</dd>
<dt>faces</dt><dd>{'blurred in these pictures (not in the data)' if blurred else 'not blurred'}</dd>
</dl>
{f'<ul class=warn>{warnings}</ul>' if warnings else ''}
<h2>Timeline</h2>
{_img(timeline, 'image/png', 'timeline')}
<h2>Coverage</h2>
{_table(['time range', 'status'], coverage)}
<h2>When people were present</h2>
{_table(['#', 'from', 'to', 'length', 'wall clock (UTC)', 'most at once', 'tracks', 'clip'], presence_rows)}
<h2>Posture events</h2>
<p>Rules and their limits: see the README ("Posture rules"). An event is a lead to review, not a finding.</p>
{_table(['best frame', 'posture', 'track', 'from', 'to', 'wall clock (UTC)', 'frames', 'score', 'rules', 'clip', 'review'], event_rows)}
<h2>People (tracks): best view of each</h2>
{f'<p>The contact sheet shows the {CONTACT_SHEET_LIMIT} tracks seen longest, of {len(tracks)}.</p>' if len(tracks) > CONTACT_SHEET_LIMIT else ''}
{_img(contact_sheet, 'image/jpeg', 'contact sheet')}
{_table(['track', 'first seen', 'last seen', 'frames', 'mean confidence', 'best view at', 'review'], track_rows)}
<p class=none>Generated by vigil from the manifest-listed outputs; time codes are from the first frame of the recording.</p>
</body></html>
"""
