"""The review artifacts of one recording — timeline, contact sheet, event thumbnails, HTML report —
rendered from its tables and the source frames."""

from __future__ import annotations

import pyarrow as pa

from vigil.review.report import report_html
from vigil.store.contracts import SourceVersion
from vigil.store.manifest import Manifest
from vigil.store.schema import POSE_EVENTS, PRESENCE, TRACKS


class SourceFrames:
    """Frames of the exact source version that was analysed (pinned by ETag on S3), as a
    ``FrameFetcher``. Every call reads through one reader that keeps what it fetched
    (``CACHE_BYTES``): the container index is read once, and a picture asked for again (the
    contact sheet's after the appearance descriptors') costs no second read of the recording.
    ``with SourceFrames(...) as fetch:`` closes the reader."""

    CACHE_BYTES = 64 << 20
    PICTURES_AHEAD = 2  # full frames held at once beside the caller's: enough to keep both busy

    def __init__(self, source: SourceVersion, probe: dict, conn_id: str | None, out: str | None = None,
                 out_conn_id: str | None = None):  # fmt: skip
        from vigil.media.probe import RecordingProbe

        self.source, self.conn_id = source, conn_id
        self.probe = RecordingProbe.from_dict({**probe, "keyframes": []})
        self._index_copy = (out, out_conn_id)  # where the recording's index copy may be (store/index_copy.py)
        self._handle = None

    def __call__(self, wanted):
        from vigil.background import prefetch
        from vigil.media.fetch import fetch_frames
        from vigil.store.index_copy import lend_index
        from vigil.store.storage import storage_for

        if not wanted:
            return
        if self._handle is None:
            storage = storage_for(self.source.uri, self.conn_id)
            self._handle = storage.open(self.source.uri, etag=self.source.etag, cache_bytes=self.CACHE_BYTES)
            out, out_conn_id = self._index_copy
            if out:
                lend_index(self._handle, out, out_conn_id, self.probe.index_bytes, self.probe.index_sha256)
        self._handle.seek(0)
        # The next pictures decode in a thread while the caller describes or draws this one.
        yield from prefetch(fetch_frames(self._handle, self.source.uri, self.probe, wanted), depth=self.PICTURES_AHEAD)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "SourceFrames":
        return self

    def __exit__(self, *_) -> None:
        self.close()


def render_review(manifest: Manifest, tables: dict[str, pa.Table], detections: pa.Table, frames: pa.Table,
                  fetch, blur: bool, clips: dict[str, dict] | None = None,
                  reviews: dict[str, str] | None = None) -> dict[str, bytes]:  # fmt: skip
    """``{file name: bytes}``: timeline.png, contact_sheet.jpg, event-NNN.jpg, report.html."""
    from vigil.review.render import contact_sheet_jpeg, event_thumbnails, timeline_png

    title = f"{manifest.recording_id} — {manifest.source.uri}"
    timeline = timeline_png(frames, tables[PRESENCE], tables[POSE_EVENTS], manifest.coverage, title)
    sheet = contact_sheet_jpeg(tables[TRACKS], detections, fetch, blur)
    thumbnails = event_thumbnails(tables[POSE_EVENTS], detections, fetch, blur)
    artifacts = {"timeline.png": timeline}
    if sheet:
        artifacts["contact_sheet.jpg"] = sheet
    for number, thumbnail in enumerate(thumbnails, 1):
        if thumbnail:
            artifacts[f"event-{number:03d}.jpg"] = thumbnail
    artifacts["report.html"] = report_html(
        manifest, tables[PRESENCE].to_pylist(), tables[POSE_EVENTS].to_pylist(), tables[TRACKS].to_pylist(),
        timeline, sheet, thumbnails, blur, clips or {}, reviews or {},
    ).encode()  # fmt: skip
    return artifacts


def write_report(out: str, recording: str, html_path: str | None, blur: bool, conn_id: str | None) -> str:
    """``vigil report``: render a recording's page afresh from its outputs and source frames.

    When the source cannot be read (only the output was handed over), the pictures stored at
    finalize time are used instead.
    """
    from pathlib import Path

    from vigil.review import query
    from vigil.errors import ParameterError, VigilError
    from vigil.store.schema import DERIVED_TABLES
    from vigil.store.storage import storage_for
    from vigil.store.verified import read_verified
    from vigil.uri import join_uri

    listed = query.manifests(out, conn_id)
    matches = [m for m in listed if m.recording_id == recording or m.recording_id.startswith(recording + "-")]
    if len(matches) != 1:
        known = ", ".join(m.recording_id for m in listed) or "none"
        raise ParameterError(f"{recording!r} matches {len(matches)} recordings under {out} (known: {known})")
    manifest = matches[0]
    con = query.connect(out, conn_id)
    rid = manifest.recording_id

    def rows(sql: str):
        return con.sql(sql, params=[rid]).to_arrow_table()

    from vigil.review.clips import covering_clip, load_clip_records
    from vigil.review.decisions import EVENT_ORDER

    order = {POSE_EVENTS: f" ORDER BY {EVENT_ORDER}", PRESENCE: " ORDER BY interval", TRACKS: " ORDER BY track_id"}
    tables = {t: rows(f"SELECT * FROM {t} WHERE recording_id = $1{order.get(t, '')}") for t in DERIVED_TABLES}
    records = load_clip_records(out, conn_id)
    wanted = [(f"presence-{p['interval']}", p) for p in tables[PRESENCE].to_pylist()]
    wanted += [(f"event-{n}", e) for n, e in enumerate(tables[POSE_EVENTS].to_pylist(), 1)]
    clips = {key: c for key, row in wanted
             if (c := covering_clip(records, rid, row["start_s"], min(row["end_s"], manifest.duration_s)))}  # fmt: skip
    reviews = {f"{target}-{number}": f"{decision} ({reviewer})" for target, number, decision, reviewer in con.execute(
        "SELECT target, target_id, decision, reviewer FROM reviews WHERE current AND recording_id = ?", [rid]).fetchall()}  # fmt: skip
    detections = rows("SELECT * FROM detections WHERE recording_id = $1")
    frames = rows("SELECT * FROM frames WHERE recording_id = $1 ORDER BY pts_s")
    try:
        # No index copy here: this manifest was read from the output store, where anyone may
        # write, so it does not choose the bytes FFmpeg opens the recording with.
        with SourceFrames(manifest.source, manifest.probe, conn_id) as fetch:
            html = render_review(manifest, tables, detections, frames, fetch, blur, clips, reviews)
    except (VigilError, OSError) as exc:
        if blur:
            raise ParameterError(f"cannot read the source to render blurred pictures: {exc}") from exc
        stored = manifest.artifacts.get("report.html")
        if not stored:
            raise
        html = {"report.html": read_verified(storage_for(out, conn_id), join_uri(out, stored["path"]), stored["sha256"])}
    target = Path(html_path or f"{rid}.html")
    target.write_bytes(html["report.html"])
    return str(target)
