"""Finalize's appearance step: describe a recording's tracks and publish ``track_appearance``.

Runs once per recording, after tracking, from the same pinned source version the review pictures
are cut from. A failure costs the descriptors (a warning in the manifest), never the analysis.
"""

from __future__ import annotations

import hashlib
import logging

from vigil.config import ProcessParams
from vigil.errors import VigilError
from vigil.store.schema import DETECTIONS, SCHEMA_VERSION, TRACK_APPEARANCE, TRACK_POINTS, TRACKS

log = logging.getLogger(__name__)


def publish_appearance(out, recording_id: str, tables: dict, read: dict, tracks_entry: dict, task: dict,
                       params: ProcessParams) -> tuple[dict, list[str]]:  # fmt: skip
    """``({"track_appearance": published file}, [])``, or ``({}, [warning])`` when it failed."""
    from vigil.analysis.appearance import choose_views, describe_tracks
    from vigil.orchestration.pipeline import output_uri
    from vigil.review.artifacts import source_fetcher
    from vigil.store.sink import parquet_bytes, publish

    try:
        from vigil.model.appearance import load_encoder

        encoder = load_encoder(device=params.device)
        views = choose_views(tables[TRACKS], read[DETECTIONS], tables[TRACK_POINTS])
        fetch = source_fetcher(task["source"], task["probe"], task.get("source_conn_id"))
        table = describe_tracks(recording_id, views, fetch, encoder.describe, encoder.method_version)
    except (VigilError, OSError, ValueError, RuntimeError) as exc:
        log.warning("%s: appearance descriptors not computed: %s", recording_id, exc)
        return {}, [f"appearance descriptors could not be computed ({exc}); vigil query similar will not find this recording's tracks"]
    material = "|".join([encoder.method_version, tracks_entry["sha256"], task["source"]["sha256"]])
    key = "appearance-" + hashlib.sha256(material.encode()).hexdigest()[:16]
    provenance = {
        "schema_version": SCHEMA_VERSION,
        "recording_id": recording_id,
        "source": task["source"],
        "method_version": encoder.method_version,
        "inputs": [tracks_entry["sha256"]],
        "params": task["params"],
    }
    uri = output_uri(task["out"], TRACK_APPEARANCE, recording_id, key)
    published = publish(out, uri, parquet_bytes(table, provenance), table.num_rows)
    return {TRACK_APPEARANCE: published.to_dict()}, []
