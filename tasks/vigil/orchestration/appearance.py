"""Finalize's appearance step: describe a recording's tracks and publish ``track_appearance``.

Runs once per recording, after tracking, from the same pinned source version the review pictures
are cut from. A failure costs the descriptors (a warning in the manifest), never the analysis.
"""

from __future__ import annotations

import logging

from vigil.errors import VigilError
from vigil.store import layout
from vigil.store.contracts import RecordingPlan
from vigil.store.schema import DETECTIONS, SCHEMA_VERSION, TRACK_APPEARANCE, TRACK_POINTS, TRACKS

log = logging.getLogger(__name__)


def publish_appearance(out, planned: RecordingPlan, tables: dict, read: dict, tracks_entry: dict,
                       fetch) -> tuple[dict, list[str]]:  # fmt: skip
    """``({"track_appearance": published file}, [])``, or ``({}, [warning])`` when it failed.
    ``fetch`` gives source frames (``SourceFrames``, shared with the review pictures)."""
    from vigil.analysis.appearance import choose_views, describe_tracks
    from vigil.store.sink import parquet_bytes, publish

    recording_id, params = planned.recording_id, planned.params
    try:
        from vigil.model.appearance import load_encoder

        encoder = load_encoder(device=params.device)
        views = choose_views(tables[TRACKS], read[DETECTIONS], tables[TRACK_POINTS])
        table = describe_tracks(recording_id, views, fetch, encoder)
    except (VigilError, OSError, ValueError, RuntimeError) as exc:
        log.warning("%s: appearance descriptors not computed: %s", recording_id, exc)
        return {}, [f"appearance descriptors could not be computed ({exc}); vigil query similar will not find this recording's tracks"]
    key = layout.derived_key(encoder.method_version, tracks_entry["sha256"], planned.source.sha256, kind="appearance")
    provenance = {
        "schema_version": SCHEMA_VERSION,
        "recording_id": recording_id,
        "source": planned.source.to_dict(),
        "method_version": encoder.method_version,
        "inputs": [tracks_entry["sha256"]],
        "params": params.to_dict(),
    }
    uri = layout.table_uri(planned.out, TRACK_APPEARANCE, recording_id, key)
    published = publish(out, uri, parquet_bytes(table, provenance), table.num_rows)
    return {TRACK_APPEARANCE: published.to_dict()}, []
