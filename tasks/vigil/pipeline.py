"""The steps the DAGs (and the CLI) run: discover -> plan -> detect_shard -> finalize.

Each step takes and returns small JSON-able dicts, so Airflow can pass them through XCom
(descriptors and counts, never frames or rows) and the CLI can call the same functions in a loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import PurePosixPath

from vigil import __version__
from vigil.config import VIDEO_SUFFIXES, ProcessParams, RunRequest
from vigil.errors import InputError, VigilError
from vigil.probe import RecordingProbe, probe
from vigil.schema import DETECTIONS, FRAMES, MANIFESTS, SCHEMA_VERSION, TABLES
from vigil.sharding import ShardRange, effective_shard_seconds, plan_shards
from vigil.storage import ObjectInfo, iter_objects, join_uri, parse_uri, sha256_of, storage_for

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- discover


def discover(request: RunRequest) -> list[ObjectInfo]:
    """Every recording named by the request: objects given directly, and videos under prefixes."""
    found: dict[str, ObjectInfo] = {}
    for source in request.sources:
        storage = storage_for(source, request.source_conn_id)
        if source.lower().endswith(VIDEO_SUFFIXES):
            info = storage.stat(source)
            found[info.uri] = info
            continue
        matches = list(iter_objects(storage, source, VIDEO_SUFFIXES))
        if not matches:
            log.warning("no recordings (%s) under %s", ", ".join(VIDEO_SUFFIXES), source)
        for info in matches:
            found[info.uri] = info
    return [found[uri] for uri in sorted(found)]


def manifest_uri(out: str, recording_id: str) -> str:
    return join_uri(out, MANIFESTS, f"{recording_id}.json")


def unprocessed(request: RunRequest, recordings: list[ObjectInfo]) -> list[ObjectInfo]:
    """Recordings with no manifest under the output for the same object version and parameters."""
    storage = storage_for(request.out, request.out_conn_id)
    done = set()
    for info in storage.list(join_uri(request.out, MANIFESTS)):
        manifest = json.loads(storage.read_bytes(info.uri))
        source = manifest["source"]
        done.add((source["uri"], source["size"], source.get("etag"), manifest["params_fingerprint"]))
    fingerprint = request.params.fingerprint()
    return [r for r in recordings if (r.uri, r.size, r.etag, fingerprint) not in done]


# ----------------------------------------------------------------------------------------- plan


def recording_id_for(uri: str, sha256: str) -> str:
    """``<file stem>-<first 12 hex of the content hash>``, safe as a Hive partition value."""
    stem = PurePosixPath(parse_uri(uri).key).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "recording"
    return f"{stem[:80]}-{sha256[:12]}"


def plan(info: ObjectInfo, request: RunRequest) -> list[dict]:
    """Fingerprint and probe one recording, and describe each of its shards for ``detect_shard``."""
    storage = storage_for(info.uri, request.source_conn_id)
    with storage.open(info.uri) as handle:
        sha256 = sha256_of(handle)
    with storage.open(info.uri) as handle:
        described = probe(handle, info.uri)
    params = request.params
    shards = plan_shards(described, params)
    used = effective_shard_seconds(described.duration, params)
    if used != Fraction(str(params.shard_seconds)):
        log.warning(
            "%s: %.0f s long; shard length grown from %s s to %s s to stay within %d shards",
            info.uri, float(described.duration), params.shard_seconds, used, len(shards),
        )  # fmt: skip
    recording_id = recording_id_for(info.uri, sha256)
    # The shard only needs the stream's timing, not the keyframe table: keep XCom small.
    timing = {**described.to_dict(), "keyframes": []}
    source = {**_info_dict(info), "sha256": sha256}
    common = {
        "recording_id": recording_id,
        "source": source,
        "probe": timing,
        "shard_count": len(shards),
        "params": params.to_dict(),
        "out": request.out,
        "source_conn_id": request.source_conn_id,
        "out_conn_id": request.out_conn_id,
        "recording_start": request.recording_start,
    }
    log.info("%s: %s, %d frames, %.1f s -> %d shards", info.uri, recording_id,
             described.frame_count, float(described.duration), len(shards))  # fmt: skip
    return [{**common, "shard": shard.to_dict()} for shard in shards]


def plan_all(request: RunRequest, recordings: list[ObjectInfo]) -> dict:
    """Plan every recording; a recording that cannot be read is reported, not allowed to stop the rest."""
    shards, failed = [], []
    for info in recordings:
        try:
            shards.extend(plan(info, request))
        except InputError as exc:
            log.error("cannot process %s: %s", info.uri, exc)
            failed.append({"uri": info.uri, "error": str(exc)})
    return {"shards": shards, "failed": failed}


def _info_dict(info: ObjectInfo) -> dict:
    return {
        "uri": info.uri,
        "size": info.size,
        "etag": info.etag,
        "last_modified": info.last_modified,
        "version_id": info.version_id,
    }


# --------------------------------------------------------------------------------------- detect


def shard_key(task: dict, model_sha256: str) -> str:
    """Deterministic per (recording hash, shard range, parameters, model hash)."""
    shard = task["shard"]
    params = ProcessParams.from_dict(task["params"])
    material = "|".join(
        [task["source"]["sha256"], shard["start"], shard["end"], params.fingerprint(), model_sha256, str(SCHEMA_VERSION)]
    )
    return f"shard-{int(shard['index']):05d}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"


def output_uri(out: str, table: str, recording_id: str, key: str) -> str:
    return join_uri(out, table, f"recording_id={recording_id}", f"{key}.parquet")


def detect_shard(task: dict, run_context: dict | None = None) -> dict:
    """Decode one shard, detect people and poses in its sampled frames, publish its Parquet files."""
    from vigil.detector import load_detector
    from vigil.frames import sampled_frames
    from vigil.sink import ShardRows, parquet_bytes, publish

    params = ProcessParams.from_dict(task["params"])
    described = RecordingProbe.from_dict(task["probe"])
    shard = ShardRange.from_dict(task["shard"])
    source_uri = task["source"]["uri"]
    detector = load_detector(params, task.get("source_conn_id"))
    start = task.get("recording_start")
    rows = ShardRows(
        recording_id=task["recording_id"],
        source_uri=source_uri,
        shard_index=shard.index,
        recording_start=datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None,
    )

    batch = []

    def flush() -> None:
        for frame, found in zip(batch, detector.detect([f.image for f in batch])):
            rows.add_frame(frame.frame_index, float(frame.seconds), found)
        batch.clear()

    source = storage_for(source_uri, task.get("source_conn_id"))
    with source.open(source_uri) as handle:
        for frame in sampled_frames(handle, source_uri, described, shard, params.sample_fps):
            batch.append(frame)
            if len(batch) >= params.batch_size:
                flush()
        flush()
        fetched = getattr(handle, "bytes_fetched", None)

    key = shard_key(task, detector.model_file.sha256)
    provenance = _provenance(task, detector, run_context)
    out = storage_for(task["out"], task.get("out_conn_id"))
    files = {}
    for table_name in TABLES:
        table = rows.table(table_name)
        uri = output_uri(task["out"], table_name, task["recording_id"], key)
        files[table_name] = publish(out, uri, parquet_bytes(table, provenance), table.num_rows).to_dict()
    result = {
        "recording_id": task["recording_id"],
        "shard": task["shard"],
        "files": files,
        "frames": files[FRAMES]["rows"],
        "detections": files[DETECTIONS]["rows"],
        "model": {"name": detector.model_file.name, "sha256": detector.model_file.sha256},
        "runtime": detector.runtime,
        "source_bytes_read": fetched,
        "task": {k: v for k, v in task.items() if k != "shard"},
    }
    log.info("shard %s of %s: %d frames, %d detections", shard.index, task["recording_id"],
             result["frames"], result["detections"])  # fmt: skip
    return result


def _provenance(task: dict, detector, run_context: dict | None) -> dict:
    import av
    import pyarrow

    return {
        "schema_version": SCHEMA_VERSION,
        "recording_id": task["recording_id"],
        "source": task["source"],
        "shard": {**task["shard"], "start_s": float(Fraction(task["shard"]["start"])),
                  "end_s": float(Fraction(task["shard"]["end"]))},  # fmt: skip
        "stream": {k: task["probe"][k] for k in ("codec", "width", "height", "time_base", "start_pts", "end_pts")},
        "params": task["params"],
        "model": {"name": detector.model_file.name, "sha256": detector.model_file.sha256},
        "runtime": detector.runtime,
        "versions": {
            "vigil": __version__,
            "ultralytics": _version("ultralytics"),
            "torch": _version("torch"),
            "av": av.__version__,
            "ffmpeg": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
            "pyarrow": pyarrow.__version__,
        },
        "airflow": run_context or None,
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


# ------------------------------------------------------------------------------------- finalize


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


class RecordingsFailed(VigilError):
    """Some recordings of a run could not be processed; the others were finalized."""

    def __init__(self, problems: list[str], summaries: list[dict]):
        super().__init__(f"{len(problems)} recording(s) failed:\n  " + "\n  ".join(problems))
        self.problems, self.summaries = problems, summaries


def _write_manifest(recording_id: str, shard_results: list[dict], task: dict) -> dict:
    for before, after in zip(shard_results, shard_results[1:]):
        if Fraction(before["shard"]["end"]) != Fraction(after["shard"]["start"]):
            raise VigilError(f"{recording_id}: shards {before['shard']} and {after['shard']} do not tile the recording")
    params = ProcessParams.from_dict(task["params"])
    described = RecordingProbe.from_dict(task["probe"])
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "recording_id": recording_id,
        "source": task["source"],
        "duration_s": float(described.duration),
        "frame_count": described.frame_count,
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
                "files": r["files"],
            }
            for r in shard_results
        ],
        "totals": {
            "sampled_frames": sum(r["frames"] for r in shard_results),
            "detections": sum(r["detections"] for r in shard_results),
        },
        "finalized_at": datetime.now(timezone.utc).isoformat(),
        "vigil_version": __version__,
    }
    out = storage_for(task["out"], task.get("out_conn_id"))
    uri = manifest_uri(task["out"], recording_id)
    out.write_bytes(uri, json.dumps(manifest, indent=2, sort_keys=True).encode())
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
