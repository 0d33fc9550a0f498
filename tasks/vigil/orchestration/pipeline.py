"""The shard step the DAGs (and the CLI) run after planning: ``detect_shard`` (then finalize.py).

It takes a ``ShardTask`` and returns a ``ShardResult`` (``store/contracts.py``); Airflow passes their
``to_dict()`` through XCom (descriptors and counts, never frames or rows). Output paths come from
``store/layout``; discovery and planning are in ``planning.py``.
"""

from __future__ import annotations

import logging

from vigil import __version__
from vigil.background import prefetch
from vigil.errors import SourceChanged
from vigil.store import layout
from vigil.store.commit import commit_shard, committed_files, new_attempt
from vigil.store.contracts import FileEntry, ShardResult, ShardTask, SourceVersion
from vigil.store.index_copy import lend_index
from vigil.store.schema import FRAMES, SCHEMA_VERSION, TABLES
from vigil.orchestration.streaming import batches
from vigil.store.storage import storage_for

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------- detect


def shard_key(task: ShardTask, model_sha256: str) -> str:
    """Deterministic per (recording hash, shard range, parameters, model hash; start time and
    generation when given): everything that decides the shard's rows."""
    planned, shard = task.plan, task.shard
    extra = [planned.recording_start or "", planned.generation or ""] if planned.recording_start or planned.generation else []
    return layout.shard_key(shard.index, planned.source.sha256, str(shard.start), str(shard.end),
                            planned.params.fingerprint(), model_sha256, str(SCHEMA_VERSION), *extra)  # fmt: skip


def detect_shard(task: ShardTask, run_context: dict | None = None) -> ShardResult:
    """Decode one shard, detect people and poses in its sampled frames, publish its Parquet files.

    Exactly once, all or nothing: the shard key is deterministic, and a shard whose commit marker
    exists is not processed again. Each attempt writes its tables under its own names, then
    creates the shard's one commit marker conditionally (``store/commit.py``): two attempts racing
    on one shard both report the winner's tables, never a mix. (A forced run plans a new
    generation, so its keys are new: it re-analyses without replacing any earlier file.)
    """
    from vigil.store.weights import resolve_model

    planned, params = task.plan, task.plan.params
    model_file = resolve_model(params.model, params.model_sha256, planned.source_conn_id)
    key = shard_key(task, model_file.sha256)
    marker = layout.commit_uri(planned.out, planned.recording_id, key)
    out = storage_for(planned.out, planned.out_conn_id)
    files = committed_files(out, planned.out, marker)
    if files is None:
        attempt = new_attempt()
        uris = {name: layout.attempt_uri(planned.out, name, planned.recording_id, key, attempt) for name in TABLES}
        ours, fetched, provenance = _analyse_shard(task, model_file, out, uris, run_context)
        files = commit_shard(out, planned.out, marker, attempt, ours)
        if files != ours:  # another attempt won: report its tables, and its provenance
            fetched, provenance = 0, _read_provenance(out, files[FRAMES].uri)
    else:
        log.info("shard %s of %s already done: %s", task.shard.index, planned.recording_id, marker)
        fetched, provenance = 0, _read_provenance(out, files[FRAMES].uri)
    result = ShardResult(
        plan=planned,
        shard=task.shard,
        files=files,
        coverage=tuple((float(lo), float(hi), status) for lo, hi, status in provenance["coverage"]),
        model=provenance["model"],
        runtime=provenance["runtime"],
        source_bytes_read=fetched,
    )
    log.info("shard %s of %s: %d frames, %d detections", task.shard.index, planned.recording_id,
             result.rows(FRAMES), result.rows("detections"))  # fmt: skip
    return result


def _analyse_shard(task: ShardTask, model_file, out, uris, run_context) -> tuple[dict[str, FileEntry], int | None, dict]:
    from vigil.model.detector import load_detector
    from vigil.faults import checkpoint
    from vigil.media.decoders import choose_decoder
    from vigil.media.frames import sampled_frames
    from vigil.media.gating import StaticGate
    from vigil.store.sink import ShardRows, parquet_bytes, publish

    planned, shard, params = task.plan, task.shard, task.plan.params
    source_uri = planned.source.uri
    detector = load_detector(params, model_file)
    decoder = choose_decoder(params, shard.index)
    runtime = detector.runtime + ("/nvdec" if decoder != "cpu" else "")  # rows say what decoded them too
    rows = ShardRows(
        recording_id=planned.recording_id,
        source_uri=source_uri,
        shard_index=shard.index,
        sample_fps=params.sample_fps,
        runtime=runtime,
        recording_start=planned.start_time,
    )

    source = storage_for(source_uri, planned.source_conn_id)
    _check_unchanged(source, planned.source)
    with source.open(source_uri, etag=planned.source.etag) as handle:
        if shard.end_pos > 0 and hasattr(handle, "expect"):  # remote reads stop near the shard's end
            handle.expect(shard.end_pos)
        probe = planned.probe  # the index from its copy, not from the recording (store/index_copy.py)
        lend_index(handle, planned.out, planned.out_conn_id, probe.index_bytes, probe.index_sha256)
        frames = sampled_frames(handle, source_uri, planned.probe, shard, params.sample_fps, list(task.keyframes), decoder,
                                frame_threads=params.device.startswith("cuda"))  # else the model has the cores
        # Decoding runs in its own thread, a bounded queue ahead of inference: neither waits for
        # the other, and memory stays at a few batches of frames whatever the shard length.
        gate = StaticGate(params.static_gate)
        last_analysed: tuple[int, object] | None = None  # (frame_index, Detections)
        for count, batch in enumerate(prefetch(batches(frames, params.batch_size), depth=2)):
            if count == 0:
                checkpoint("decode")
            static = {f.frame_index for f in batch if f.image is not None and gate.is_static(f.image)}
            analysed = [f for f in batch if f.image is not None and f.frame_index not in static]
            checkpoint("inference")
            found_by_index = dict(zip((f.frame_index for f in analysed), detector.detect([f.image for f in analysed])))
            for frame in batch:  # in time order, so a static frame follows the frame it inherits from
                if frame.image is None:
                    rows.add_missing(frame.seconds, frame.status, frame.until)
                elif frame.frame_index in static:
                    rows.add_static(frame.frame_index, frame.seconds, last_analysed[0], last_analysed[1])
                else:
                    last_analysed = (frame.frame_index, found_by_index[frame.frame_index])
                    rows.add_frame(frame.frame_index, frame.seconds, last_analysed[1])
        fetched = getattr(handle, "bytes_fetched", None)

    provenance = _provenance(task, detector, runtime, run_context, rows.coverage(shard.start, shard.end))
    files = {}
    for name in TABLES:
        table = rows.table(name)
        files[name] = FileEntry(**publish(out, uris[name], parquet_bytes(table, provenance), table.num_rows).to_dict())
    return files, fetched, provenance



def _check_unchanged(storage, planned: SourceVersion) -> None:
    """A recording must be the version that was hashed at planning (S3 reads are pinned by ETag too)."""
    now = storage.stat(planned.uri)
    if now.size != planned.size or (planned.etag and now.etag != planned.etag):
        raise SourceChanged(
            f"{planned.uri}: changed since it was hashed (size {planned.size} -> {now.size}, "
            f"ETag {planned.etag} -> {now.etag}); trigger the run again"
        )


def _read_provenance(out, uri: str) -> dict:
    from vigil.store.sink import read_provenance

    return read_provenance(out.read_bytes(uri))


def _provenance(task: ShardTask, detector, runtime: str, run_context: dict | None, coverage: list[list]) -> dict:
    import av
    import pyarrow

    planned, timing = task.plan, task.plan.probe.to_dict()
    return {
        "schema_version": SCHEMA_VERSION,
        "recording_id": planned.recording_id,
        "source": planned.source.to_dict(),
        "shard": {**task.shard.to_dict(), "start_s": float(task.shard.start), "end_s": float(task.shard.end)},
        "stream": {k: timing[k] for k in ("codec", "width", "height", "time_base", "start_pts", "end_pts", "rotation",
                                          "stream_index", "container_stream", "synthesized_fps")},
        "params": planned.params.to_dict(),
        "model": {"name": detector.model_file.name, "sha256": detector.model_file.sha256},
        "runtime": runtime,
        "coverage": coverage,
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
