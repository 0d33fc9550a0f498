"""The last step of a run: per complete recording, its derived tables (tracks, presence, posture
events), review pictures and report, then its manifest; and a clear failure for any recording
that did not complete.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, replace
from datetime import datetime, timezone

from vigil import __version__
from vigil.errors import RecordingsFailed, VigilError
from vigil.store import layout
from vigil.store.contracts import RecordingPlan, ShardResult
from vigil.store.custody import publish_sealed
from vigil.store.manifest import Manifest, ManifestShard, relative_entry
from vigil.store.schema import DETECTIONS, FRAMES, SCHEMA_VERSION, SCHEMAS, TABLES
from vigil.store.storage import Storage, storage_for

log = logging.getLogger(__name__)

__all__ = ["RecordingsFailed", "finalize"]  # RecordingsFailed lives in errors; callers may take it from here


def finalize(results: list[ShardResult], failures: list[dict] | None = None) -> list[dict]:
    """Write one manifest per complete recording; then fail, naming them, if any recording was not.

    A recording is complete when every shard of its plan returned a result. Complete recordings
    get their manifest even when another recording of the same run failed: one broken file
    never hides the others' output.
    """
    by_recording: dict[tuple[str, str], list[ShardResult]] = {}
    for result in results:
        by_recording.setdefault((result.plan.recording_id, result.plan.run_key), []).append(result)
    problems = [f"{f['uri']}: {f['error']}" for f in failures or []]
    summaries = []
    for _, shard_results in sorted(by_recording.items()):
        shard_results = sorted(shard_results, key=lambda r: r.shard.index)
        planned = shard_results[0].plan
        missing = sorted(set(range(planned.shard_count)) - {r.shard.index for r in shard_results})
        if missing:
            problems.append(f"{planned.source.uri}: shards {missing} did not finish; no manifest written")
            continue
        summaries.append(_write_manifest(planned, shard_results))
    if problems:
        raise RecordingsFailed(problems, summaries)
    return summaries


def _publish_derived(out: Storage, planned: RecordingPlan, shard_results: list[ShardResult]) -> tuple[dict, dict, dict]:
    """Tracks, presence and posture events of a complete recording, published like shard files:
    at keys derived from the hashes of the shard files they were computed from."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from vigil.analysis.derived import DERIVED_VERSION, derive
    from vigil.store.sink import parquet_bytes, publish
    from vigil.store.verified import read_verified

    inputs = {name: [r.files[name] for r in shard_results] for name in TABLES}
    read = {
        name: pa.concat_tables([pq.read_table(io.BytesIO(read_verified(out, e.uri, e.sha256)), schema=SCHEMAS[name])
                                for e in entries])  # fmt: skip
        for name, entries in inputs.items()
    }
    tables = derive(planned.recording_id, read[DETECTIONS], read[FRAMES], planned.params.sample_fps, planned.start_time)
    hashes = [e.sha256 for entries in inputs.values() for e in entries]
    key = layout.derived_key(DERIVED_VERSION, *hashes)
    provenance = {
        "schema_version": SCHEMA_VERSION,
        "recording_id": planned.recording_id,
        "source": planned.source.to_dict(),
        "derived_version": DERIVED_VERSION,
        "inputs": hashes,
        "params": planned.params.to_dict(),
    }
    files = {
        name: publish(out, layout.table_uri(planned.out, name, planned.recording_id, key),
                      parquet_bytes(table, provenance), table.num_rows).to_dict()  # fmt: skip
        for name, table in tables.items()
    }
    return files, tables, read


def _publish_review(out: Storage, manifest: Manifest, tables: dict, read: dict, planned: RecordingPlan,
                    fetch) -> Manifest:  # fmt: skip
    """Render and publish the review pictures and report, in this run's own review folder; a
    failure here costs pictures, not data (the manifest says so)."""
    from vigil.review.artifacts import render_review

    clips = {}
    if planned.clips:
        from vigil.review.clips import clips_for

        clips, clip_warnings = clips_for(planned.out, manifest, tables, conn_id=planned.out_conn_id,
                                         source_conn_id=planned.source_conn_id)  # fmt: skip
        manifest = replace(manifest, warnings=[*manifest.warnings, *clip_warnings])
    try:
        artifacts = render_review(manifest, tables, read[DETECTIONS], read[FRAMES], fetch, planned.blur_faces, clips)
    except (VigilError, OSError, ValueError) as exc:
        log.warning("%s: review pictures not rendered: %s", planned.recording_id, exc)
        return replace(manifest, warnings=[*manifest.warnings, f"review pictures could not be rendered: {exc}"])
    published = {}
    for name, data in artifacts.items():
        uri = layout.review_uri(planned.out, planned.recording_id, planned.run_key, name)
        out.write_bytes(uri, data)
        entry = {"uri": uri, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        published[name] = relative_entry(entry, planned.out)
    return replace(manifest, artifacts=published)


def _manifest(planned: RecordingPlan, shard_results: list[ShardResult], derived_files: dict,
              warnings: list[str]) -> Manifest:  # fmt: skip
    """The recording's manifest before its review pictures: shards, derived tables, totals."""
    shards = [
        ManifestShard(
            index=r.shard.index, start=r.shard.start, end=r.shard.end,
            files={name: relative_entry(entry.to_dict(), planned.out) for name, entry in r.files.items()},
            coverage=[list(c) for c in r.coverage], runtime=r.runtime,
        )  # fmt: skip
        for r in shard_results
    ]
    manifest = Manifest(
        recording_id=planned.recording_id,
        source=planned.source,
        duration=planned.probe.duration,
        frame_count=planned.probe.frame_count,
        probe=planned.probe.to_dict(),
        warnings=[*planned.probe.warnings, *warnings],
        params=planned.params.to_dict(),
        params_fingerprint=planned.params.fingerprint(),
        model=shard_results[0].model,
        runtimes=sorted({r.runtime for r in shard_results}),
        recording_start=planned.recording_start,
        shards=shards,
        derived={name: relative_entry(entry, planned.out) for name, entry in derived_files.items()},
        totals={},
        finalized_at=datetime.now(timezone.utc).isoformat(),
        vigil_version=__version__,
        schema_version=SCHEMA_VERSION,
        run_key=planned.run_key,
    )
    manifest = replace(manifest, totals={
        "sampled_frames": sum(r.rows(FRAMES) for r in shard_results),
        "detections": sum(r.rows(DETECTIONS) for r in shard_results),
        "tracks": derived_files["tracks"]["rows"],
        "presence_intervals": derived_files["presence"]["rows"],
        "pose_events": derived_files["pose_events"]["rows"],
        **manifest.status_seconds(),
    })  # fmt: skip
    return manifest


def _write_manifest(planned: RecordingPlan, shard_results: list[ShardResult]) -> dict:
    for before, after in zip(shard_results, shard_results[1:]):
        if before.shard.end != after.shard.start:
            raise VigilError(f"{planned.recording_id}: shards {before.shard} and {after.shard} do not tile the recording")
    out = storage_for(planned.out, planned.out_conn_id)
    derived_files, derived_tables, read = _publish_derived(out, planned, shard_results)
    from vigil.orchestration.appearance import publish_appearance  # "find this person": descriptors per track
    from vigil.review.artifacts import SourceFrames

    # One reader for every picture finalize cuts from the source: appearance, then review.
    with SourceFrames(planned.source, planned.probe.to_dict(), planned.source_conn_id, planned.out,
                      planned.out_conn_id) as fetch:  # fmt: skip
        appearance, appearance_warnings = publish_appearance(out, planned, derived_tables, read,
                                                             derived_files["tracks"], fetch)  # fmt: skip
        manifest = _manifest(planned, shard_results, {**derived_files, **appearance}, appearance_warnings)
        manifest = _publish_review(out, manifest, derived_tables, read, planned, fetch)
    uri = layout.manifest_uri(planned.out, planned.recording_id, planned.run_key)
    sealed = publish_sealed(out, planned.out, uri, manifest.to_dict())  # signed, ledgered, stamped: store/custody
    summary = {
        "recording_id": planned.recording_id,
        "source_uri": planned.source.uri,
        "manifest_uri": uri,
        "duration_s": manifest.duration_s,
        "shards": len(shard_results),
        **manifest.totals,
        **asdict(sealed),
    }
    log.info("finalized %s", summary)
    return summary
