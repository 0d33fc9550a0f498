"""The steps the DAGs (and the CLI) run: discover -> plan -> detect_shard (then finalize.py).

Each step takes and returns the typed contracts of ``store/contracts.py`` (``ShardTask``,
``ShardResult``); Airflow passes their ``to_dict()`` through XCom (descriptors and counts, never
frames or rows) and the CLI calls the same functions in a loop. Output paths come from ``store/layout``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import PurePosixPath

from vigil import __version__
from vigil.config import VIDEO_SUFFIXES, RunRequest, as_fraction
from vigil.errors import InputError, IntegrityError, ObjectNotFound, RecordingError, SourceChanged
from vigil.media.frames import keyframes_between
from vigil.orchestration.expected import check_all_matched, expected_for
from vigil.media.probe import RecordingProbe, probe
from vigil.media.sharding import MAX_SHARDS, effective_shard_seconds, plan_shards
from vigil.store import layout
from vigil.store.contracts import FileEntry, RecordingPlan, ShardResult, ShardTask, SourceVersion
from vigil.store.manifest import read_manifests
from vigil.store.readers import HashingReader
from vigil.store.schema import FRAMES, SCHEMA_VERSION, TABLES
from vigil.store.storage import ObjectInfo, iter_objects, storage_for
from vigil.uri import parse_uri

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- discover


def discover(request: RunRequest) -> list[ObjectInfo]:
    """Every recording named by the request: objects given directly, and videos under prefixes."""
    found: dict[str, ObjectInfo] = {}
    for source in request.sources:
        storage = storage_for(source, request.source_conn_id)
        info = named_object(storage, source)  # one object named: analysed whatever its extension
        if info is not None:
            found[info.uri] = info
            continue
        matches = list(iter_objects(storage, source, VIDEO_SUFFIXES))
        if not matches:
            log.warning("no recordings (%s) under %s", ", ".join(VIDEO_SUFFIXES), source)
        for info in matches:
            found[info.uri] = info
    check_all_matched(request, list(found.values()))  # an unused expected hash stops the run here
    return [found[uri] for uri in sorted(found)]


def named_object(storage, source: str) -> ObjectInfo | None:
    """The object a source URI names, or None when it is a prefix. Extension filters apply only to
    prefix listings: an object named explicitly is the investigator's choice, and FFmpeg decides
    whether it can be read (or the recording fails with its reason)."""
    if source.endswith("/") or not parse_uri(source).key.strip("/"):
        return None
    try:
        return storage.stat(source)
    except ObjectNotFound:
        if source.lower().endswith(VIDEO_SUFFIXES):
            raise  # a recording named that is not there: say so, do not look for a prefix
        return None


def unprocessed(request: RunRequest, recordings: list[ObjectInfo]) -> list[ObjectInfo]:
    """Recordings with no manifest under the output for the same object version and parameters.
    An unreadable manifest is logged and counts as no manifest: its recording is processed again."""
    listing = read_manifests(storage_for(request.out, request.out_conn_id), request.out)
    for _, problem in listing.problems:
        log.error("%s (run vigil verify)", problem)
    done = {(m.source.uri, m.source.size, m.source.etag, m.params_fingerprint) for _, m in listing.found}
    fingerprint = request.params.fingerprint()
    return [r for r in recordings if (r.uri, r.size, r.etag, fingerprint) not in done]


# ----------------------------------------------------------------------------------------- plan


def recording_id_for(uri: str, sha256: str, stream_index: int = 0) -> str:
    """``<file stem>-<first 12 hex of the content hash>``, safe as a Hive partition value; the
    video streams after a file's first are recordings of their own, ``<file stem>-s<N>-<hash>``."""
    stem = PurePosixPath(parse_uri(uri).key).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "recording"
    stream = f"-s{stream_index}" if stream_index else ""
    return f"{stem[:80]}{stream}-{sha256[:12]}"


def plan(info: ObjectInfo, request: RunRequest, max_shards: int = MAX_SHARDS) -> list[ShardTask]:
    """Fingerprint and probe one recording, and describe each of its shards for ``detect_shard``."""
    storage = storage_for(info.uri, request.source_conn_id)
    info = storage.stat(info.uri)  # the exact version: size, ETag, version id, last-modified
    # One pass: the probe demuxes the whole recording front to back and the reader hashes it as it
    # goes (only a container index read out of order is read again).
    expected = expected_for(request, info.uri)  # matched by canonical URI, not by spelling
    with storage.open(info.uri, etag=info.etag) as handle:
        reader = HashingReader(handle)
        try:
            described = probe(reader, info.uri, request.params.frame_rate)
        except RecordingError:  # a recording that is not what was handed over says that first
            _check_expected_hash(storage, info.uri, reader.hexdigest(), expected)
            raise
        sha256 = reader.hexdigest()
    _check_expected_hash(storage, info.uri, sha256, expected)
    tasks = _shard_tasks(info, request, described, sha256, max_shards)
    for index in range(1, described.video_streams):  # every further video stream: a recording of its own
        with storage.open(info.uri, etag=info.etag) as handle:
            further = probe(handle, info.uri, request.params.frame_rate, stream_index=index)
        tasks += _shard_tasks(info, request, further, sha256, max_shards)
    return tasks


def _shard_tasks(info: ObjectInfo, request: RunRequest, described: RecordingProbe, sha256: str, max_shards: int) -> list[ShardTask]:
    params = request.params
    shards = plan_shards(described, params, max_shards)
    used = effective_shard_seconds(described.duration, params, max_shards)
    if used != as_fraction(params.shard_seconds):
        log.warning(
            "%s: %.0f s long; shard length grown from %s s to %s s to stay within %d shards",
            info.uri, float(described.duration), params.shard_seconds, used, len(shards),
        )  # fmt: skip
    recording_id = recording_id_for(info.uri, sha256, described.stream_index)
    for warning in described.warnings:
        log.warning("%s: %s", info.uri, warning)
    # Each shard gets the stream's timing and only its own keyframes (to re-anchor frame indices
    # after damage), not the recording's whole keyframe table: XCom stays small.
    planned = RecordingPlan(
        recording_id=recording_id,
        source=SourceVersion.of(info, sha256),
        probe=replace(described, keyframes=(), frame_pts=()),  # the frame list served planning only
        shard_count=len(shards),
        params=params,
        out=request.out,
        source_conn_id=request.source_conn_id,
        out_conn_id=request.out_conn_id,
        recording_start=request.recording_start or start_from_name(info.uri),
        blur_faces=request.blur_faces,
        clips=request.clips,
        # Forced: this run's files get keys of their own, so no file an earlier manifest lists is replaced.
        generation=datetime.now(timezone.utc).strftime("g%Y%m%dT%H%M%S%fZ") if request.force else None,
    )
    log.info("%s: %s, %d frames, %.1f s -> %d shards", info.uri, recording_id,
             described.frame_count, float(described.duration), len(shards))  # fmt: skip
    return [
        ShardTask(planned, shard, tuple(keyframes_between(described, shard.anchor_pts, shard.end)))
        for shard in shards
    ]


def _check_expected_hash(storage, uri: str, actual: str, expected: str | None) -> None:
    """Stop a recording whose content is not what the investigator was given (parameter or sidecar)."""
    origin = "the trigger parameter"
    if expected is None:
        try:
            sidecar = storage.read_bytes(uri + ".sha256").decode("ascii", "replace").split()
        except ObjectNotFound:
            return
        expected, origin = (sidecar[0] if sidecar else ""), f"the sidecar {uri}.sha256"
    if actual != expected.lower():
        raise IntegrityError(f"{uri}: SHA-256 is {actual}, but {origin} says {expected}; not analysed")


def start_from_name(uri: str) -> str | None:
    """A recording's wall-clock start from its file name, when the deployment says how to read it:
    ``VIGIL_FILENAME_START`` is a regex with named groups Y, m, d, H, M, S (e.g. matching
    ``cam3_20240301_221500.mp4``); times are UTC unless ``VIGIL_FILENAME_TZ`` gives an offset
    such as ``+02:00``."""
    import os

    pattern = os.environ.get("VIGIL_FILENAME_START")
    if not pattern:
        return None
    found = re.search(pattern, PurePosixPath(parse_uri(uri).key).name)
    if not found:
        return None
    parts = {k: int(v) for k, v in found.groupdict().items() if v is not None}
    zone = os.environ.get("VIGIL_FILENAME_TZ", "+00:00")
    try:
        stamp = datetime(parts["Y"], parts["m"], parts["d"], parts.get("H", 0), parts.get("M", 0), parts.get("S", 0))
        return datetime.fromisoformat(stamp.isoformat() + zone).astimezone(timezone.utc).isoformat()
    except (KeyError, ValueError) as exc:  # this recording fails alone, not the whole drop
        raise RecordingError(uri, f"its file name gives no valid start time ({exc}); rename it or give recording_start") from exc


def plan_all(request: RunRequest, recordings: list[ObjectInfo], max_shards: int = MAX_SHARDS) -> dict:
    """Plan every recording; a recording that cannot be read is reported, not allowed to stop the rest.

    ``max_shards`` bounds the shards of one recording (its shards grow longer past it); a drop
    may need any number in all: Airflow maps them in batches (``orchestration/drop.py``).
    """
    shards, failed = [], []
    first_with_id: dict[str, str] = {}  # recording_id -> the URI planned under it
    for info in recordings:
        try:
            planned = plan(info, request, max_shards)
            first = first_with_id.setdefault(planned[0].plan.recording_id, info.uri) if planned else info.uri
            if first != info.uri:  # same name and content in two folders: one recording, analysed once
                raise RecordingError(info.uri, f"same file name and content as {first}, analysed as "
                                               f"{planned[0].plan.recording_id}; not analysed twice")  # fmt: skip
            shards.extend(planned)
        except InputError as exc:
            log.error("cannot process %s: %s", info.uri, exc)
            failed.append({"uri": info.uri, "error": str(exc)})
    return {"shards": shards, "failed": failed}


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

    Exactly once: the output keys are deterministic, a shard whose files already exist is not
    processed again, and each file is published with a conditional create, so two attempts racing
    on one shard end with one complete file that both report. (A forced run plans a new
    generation, so its keys are new: it re-analyses without replacing any earlier file.)
    """
    from vigil.store.weights import resolve_model

    planned, params = task.plan, task.plan.params
    model_file = resolve_model(params.model, params.model_sha256, planned.source_conn_id)
    key = shard_key(task, model_file.sha256)
    uris = {name: layout.table_uri(planned.out, name, planned.recording_id, key) for name in TABLES}
    out = storage_for(planned.out, planned.out_conn_id)
    files = _existing_files(out, uris)
    if files is None:
        files, fetched, provenance = _analyse_shard(task, model_file, out, uris, run_context)
    else:
        log.info("shard %s of %s already done: %s", task.shard.index, planned.recording_id, uris[FRAMES])
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
    from vigil.media.frames import choose_decoder, sampled_frames
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
        frames = sampled_frames(handle, source_uri, planned.probe, shard, params.sample_fps, list(task.keyframes), decoder)
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


def batches(frames, size: int):
    """Lists holding up to ``size`` decoded frames (and any bins without a frame met on the way)."""
    batch, decoded = [], 0
    for frame in frames:
        batch.append(frame)
        decoded += frame.image is not None
        if decoded >= size:
            yield batch
            batch, decoded = [], 0
    if batch:
        yield batch


def prefetch(iterable, depth: int):
    """Iterate ``iterable`` in a background thread, at most ``depth`` items ahead; errors propagate."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            items.put(exc)

    worker = threading.Thread(target=produce, name="vigil-decode", daemon=True)
    worker.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def _check_unchanged(storage, planned: SourceVersion) -> None:
    """A recording must be the version that was hashed at planning (S3 reads are pinned by ETag too)."""
    now = storage.stat(planned.uri)
    if now.size != planned.size or (planned.etag and now.etag != planned.etag):
        raise SourceChanged(
            f"{planned.uri}: changed since it was hashed (size {planned.size} -> {now.size}, "
            f"ETag {planned.etag} -> {now.etag}); trigger the run again"
        )


def _existing_files(out, uris: dict[str, str]) -> dict[str, FileEntry] | None:
    """The published files of a finished shard, or None if any is missing."""
    from vigil.store.sink import describe

    try:
        return {name: FileEntry(**describe(uri, out.read_bytes(uri)).to_dict()) for name, uri in uris.items()}
    except ObjectNotFound:
        return None


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
