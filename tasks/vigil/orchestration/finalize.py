"""The last step of a run: per complete recording, its derived tables (tracks, presence, posture
events), review pictures and report, then its manifest; and a clear failure for any recording
that did not complete.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from fractions import Fraction

from vigil import __version__
from vigil.config import ProcessParams
from vigil.errors import VigilError
from vigil.store.manifest import manifest_bytes, relative_entry
from vigil.orchestration.pipeline import manifest_uri, output_uri
from vigil.media.probe import RecordingProbe
from vigil.store.schema import DETECTIONS, FRAMES, SCHEMA_VERSION, SCHEMAS, STATUSES, TABLES
from vigil.store.storage import storage_for
from vigil.uri import join_uri

log = logging.getLogger(__name__)


def finalize(results: list[dict], failures: list[dict] | None = None) -> list[dict]:
    """Write one manifest per complete recording; then fail, naming them, if any recording was not.

    A recording is complete when every shard of its plan returned a result. Complete recordings
    get their manifest even when another recording of the same run failed: one broken file
    never hides the others' output.
    """
    by_recording: dict[str, list[dict]] = {}
    for result in results:
        by_recording.setdefault(result["recording_id"], []).append(result)
    problems = [f"{f['uri']}: {f['error']}" for f in failures or []]
    summaries = []
    for recording_id, shard_results in sorted(by_recording.items()):
        shard_results = sorted(shard_results, key=lambda r: int(r["shard"]["index"]))
        task = shard_results[0]["task"]
        missing = sorted(set(range(int(task["shard_count"]))) - {int(r["shard"]["index"]) for r in shard_results})
        if missing:
            problems.append(f"{task['source']['uri']}: shards {missing} did not finish; no manifest written")
            continue
        summaries.append(_write_manifest(recording_id, shard_results, task))
    if problems:
        raise RecordingsFailed(problems, summaries)
    return summaries


def merge_coverage(ranges: list[list]) -> list[list]:
    """Join adjacent ``[start_s, end_s, status]`` ranges of the same status (across shards)."""
    merged: list[list] = []
    for lo, hi, status in sorted(ranges):
        if merged and merged[-1][2] == status and abs(merged[-1][1] - lo) < 1e-9:
            merged[-1][1] = hi
        else:
            merged.append([lo, hi, status])
    return merged


class RecordingsFailed(VigilError):
    """Some recordings of a run could not be processed; the others were finalized."""

    def __init__(self, problems: list[str], summaries: list[dict]):
        super().__init__(f"{len(problems)} recording(s) failed:\n  " + "\n  ".join(problems))
        self.problems, self.summaries = problems, summaries


def _publish_derived(out, recording_id: str, shard_results: list[dict], task: dict, params: ProcessParams) -> dict:
    """Tracks, presence and posture events of a complete recording, published like shard files:
    at keys derived from the hashes of the shard files they were computed from."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from vigil.analysis.derived import DERIVED_VERSION, derive
    from vigil.store.sink import parquet_bytes, publish

    inputs = {name: [r["files"][name] for r in shard_results] for name in TABLES}
    read = {
        name: pa.concat_tables([pq.read_table(io.BytesIO(out.read_bytes(e["uri"])), schema=SCHEMAS[name]) for e in entries])
        for name, entries in inputs.items()
    }
    start = task.get("recording_start")
    tables = derive(
        recording_id, read[DETECTIONS], read[FRAMES], params.sample_fps,
        datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None,
    )  # fmt: skip
    material = "|".join([DERIVED_VERSION, *(e["sha256"] for entries in inputs.values() for e in entries)])
    key = "derived-" + hashlib.sha256(material.encode()).hexdigest()[:16]
    provenance = {
        "schema_version": SCHEMA_VERSION,
        "recording_id": recording_id,
        "source": task["source"],
        "derived_version": DERIVED_VERSION,
        "inputs": [e["sha256"] for entries in inputs.values() for e in entries],
        "params": task["params"],
    }
    files = {
        name: publish(out, output_uri(task["out"], name, recording_id, key), parquet_bytes(table, provenance),
                      table.num_rows).to_dict()  # fmt: skip
        for name, table in tables.items()
    }
    return files, tables, read


def _publish_review(out, manifest: dict, tables: dict, read: dict, task: dict) -> dict:
    """Render and publish the review pictures and report; a failure here costs pictures, not data."""
    from vigil.review.artifacts import REVIEW, render_review, source_fetcher

    fetch = source_fetcher(task["source"], task["probe"], task.get("source_conn_id"))
    try:
        artifacts = render_review(manifest, tables, read[DETECTIONS], read[FRAMES], fetch, bool(task.get("blur_faces")))
    except (VigilError, OSError, ValueError) as exc:
        log.warning("%s: review pictures not rendered: %s", manifest["recording_id"], exc)
        manifest["warnings"] = [*manifest["warnings"], f"review pictures could not be rendered: {exc}"]
        return {}
    published = {}
    for name, data in artifacts.items():
        uri = join_uri(task["out"], REVIEW, f"recording_id={manifest['recording_id']}", name)
        out.write_bytes(uri, data)
        published[name] = relative_entry({"uri": uri, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
                                         task["out"])  # fmt: skip
    return published


def _write_manifest(recording_id: str, shard_results: list[dict], task: dict) -> dict:
    for before, after in zip(shard_results, shard_results[1:]):
        if Fraction(before["shard"]["end"]) != Fraction(after["shard"]["start"]):
            raise VigilError(f"{recording_id}: shards {before['shard']} and {after['shard']} do not tile the recording")
    params = ProcessParams.from_dict(task["params"])
    described = RecordingProbe.from_dict(task["probe"])
    out = storage_for(task["out"], task.get("out_conn_id"))
    derived_files, derived_tables, read = _publish_derived(out, recording_id, shard_results, task, params)
    from vigil.orchestration.appearance import publish_appearance  # "find this person": descriptors per track

    appearance, appearance_warnings = publish_appearance(out, recording_id, derived_tables, read,
                                                         derived_files["tracks"], task, params)  # fmt: skip
    derived_files.update(appearance)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "recording_id": recording_id,
        "source": task["source"],
        "duration": str(described.duration),  # exact, seconds
        "duration_s": float(described.duration),
        "frame_count": described.frame_count,
        "probe": task["probe"],  # the stream's timing: enough to find any frame again (vigil report)
        "warnings": [*described.warnings, *appearance_warnings],
        "params": task["params"],
        "params_fingerprint": params.fingerprint(),
        "model": shard_results[0]["model"],
        "runtime": shard_results[0]["runtime"],
        "recording_start": task.get("recording_start"),
        "shards": [
            {
                "index": int(r["shard"]["index"]),
                "start": r["shard"]["start"],
                "end": r["shard"]["end"],
                "start_s": float(Fraction(r["shard"]["start"])),
                "end_s": float(Fraction(r["shard"]["end"])),
                "files": {name: relative_entry(entry, task["out"]) for name, entry in r["files"].items()},
                "coverage": r["coverage"],
            }
            for r in shard_results
        ],
        "coverage": merge_coverage([c for r in shard_results for c in r["coverage"]]),
        "derived": {name: relative_entry(entry, task["out"]) for name, entry in derived_files.items()},
        "totals": {
            "sampled_frames": sum(r["frames"] for r in shard_results),
            "detections": sum(r["detections"] for r in shard_results),
            "tracks": derived_files["tracks"]["rows"],
            "presence_intervals": derived_files["presence"]["rows"],
            "pose_events": derived_files["pose_events"]["rows"],
            **{
                f"{status}_seconds": round(sum(hi - lo for lo, hi, s in
                                               (c for r in shard_results for c in r["coverage"]) if s == status), 3)
                for status in STATUSES
            },
        },
        "finalized_at": datetime.now(timezone.utc).isoformat(),
        "vigil_version": __version__,
    }
    manifest["artifacts"] = _publish_review(out, manifest, derived_tables, read, task)
    uri = manifest_uri(task["out"], recording_id)
    out.write_bytes(uri, manifest_bytes(manifest))
    summary = {
        "recording_id": recording_id,
        "source_uri": task["source"]["uri"],
        "manifest_uri": uri,
        "duration_s": manifest["duration_s"],
        "shards": len(shard_results),
        **manifest["totals"],
    }
    log.info("finalized %s", summary)
    return summary
