"""Which recordings a run covers and how each is cut into shards: discover -> plan (then ``pipeline.detect_shard``).

Planning reads each recording once: the probe demuxes it front to back while the reader hashes it.
Steps return the typed contracts of ``store/contracts.py``; the CLI and the Airflow tasks call them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import PurePosixPath

from vigil.config import VIDEO_SUFFIXES, RunRequest, as_fraction
from vigil.errors import InputError, IntegrityError, ObjectNotFound, RecordingError
from vigil.media.containers import mp4_index_bytes
from vigil.media.frames import keyframes_between
from vigil.media.probe import RecordingProbe, probe
from vigil.media.sharding import MAX_SHARDS, effective_shard_seconds, plan_shards
from vigil.operator import OperatorPolicy
from vigil.orchestration.expected import check_all_matched, expected_for
from vigil.store.contracts import RecordingPlan, ShardTask, SourceVersion
from vigil.store.index_copy import read_index, save_index
from vigil.store.readers import HashingReader
from vigil.store.storage import ObjectInfo, iter_objects, storage_for
from vigil.store.vouched import vouched_manifests
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


def container_duration(request: RunRequest, info: ObjectInfo) -> float | None:
    """The duration the container states, in seconds, from its header and index only (an MP4's
    index, a few hundred KB; FFmpeg's estimate elsewhere); None when it states none or cannot be
    opened (planning then reads the recording and says why). For the nightly cap, before planning."""
    import av

    try:
        with storage_for(info.uri, request.source_conn_id).open(info.uri, etag=info.etag) as source:
            with av.open(source, mode="r", metadata_errors="ignore") as container:
                return container.duration / av.time_base if container.duration and container.duration > 0 else None
    except Exception as exc:  # noqa: BLE001 - any file that will not say is planned, where its error is reported
        log.warning("%s: no container duration (%s); planned tonight", info.uri, exc)
        return None


def tonight(request: RunRequest, recordings: list[ObjectInfo]) -> tuple[list[ObjectInfo], list[dict]]:
    """The nightly run's recordings to plan under ``VIGIL_NIGHTLY_MAX_HOURS`` (``drop.preselect``,
    asking containers for their durations), and those it leaves for later unread."""
    from dataclasses import asdict

    from vigil.orchestration import drop

    by_uri = {info.uri: info for info in recordings}
    taken, unread = drop.preselect([asdict(info) for info in recordings], drop.NightlyCap.from_environment(),
                                   lambda r: container_duration(request, by_uri[r["uri"]]))  # fmt: skip
    return [by_uri[r["uri"]] for r in taken], unread


def unprocessed(request: RunRequest, recordings: list[ObjectInfo]) -> list[ObjectInfo]:
    """Recordings with no manifest under the output for the same object version and parameters.
    A manifest the ledger does not vouch for (store/vouched.py: one anyone could have written) or
    that cannot be read is logged and counts as none: its recording is processed again."""
    listing = vouched_manifests(storage_for(request.out, request.out_conn_id), request.out)
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
        # Before hashing starts: the box headers and the index are bytes FFmpeg reads first anyway.
        index_bytes = mp4_index_bytes(handle)
        index_data = read_index(handle, index_bytes) if index_bytes else b""
        reader = HashingReader(handle)
        try:
            described = probe(reader, info.uri, request.params.frame_rate)
        except RecordingError:  # a recording that is not what was handed over says that first
            _check_expected_hash(storage, info.uri, reader.hexdigest(), expected)
            raise
        sha256 = reader.hexdigest()
    _check_expected_hash(storage, info.uri, sha256, expected)
    if index_data and "mp4" in described.container_format.split(","):  # shards read its copy (store/index_copy.py)
        copy_sha256 = save_index(request.out, request.out_conn_id, index_data)
        described = replace(described, index_bytes=index_bytes, index_sha256=copy_sha256)
    tasks = _shard_tasks(info, request, described, sha256, max_shards)
    for index in range(1, described.video_streams):  # every further video stream: a recording of its own
        with storage.open(info.uri, etag=info.etag) as handle:
            further = replace(probe(handle, info.uri, request.params.frame_rate, stream_index=index),
                              index_bytes=described.index_bytes, index_sha256=described.index_sha256)  # fmt: skip
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


def start_from_name(uri: str, policy: OperatorPolicy | None = None) -> str | None:
    """A recording's wall-clock start from its file name, when the operator says how to read it
    (``VIGIL_FILENAME_START``/``VIGIL_FILENAME_TZ``, see ``vigil.operator``): a regex with named
    groups Y, m, d, H, M, S (e.g. matching ``cam3_20240301_221500.mp4``), UTC unless an offset such
    as ``+02:00`` is given."""
    policy = policy or OperatorPolicy.from_environment()
    if not policy.filename_start:
        return None
    found = re.search(policy.filename_start, PurePosixPath(parse_uri(uri).key).name)
    if not found:
        return None
    parts = {k: int(v) for k, v in found.groupdict().items() if v is not None}
    try:
        stamp = datetime(parts["Y"], parts["m"], parts["d"], parts.get("H", 0), parts.get("M", 0), parts.get("S", 0))
        return datetime.fromisoformat(stamp.isoformat() + policy.filename_tz).astimezone(timezone.utc).isoformat()
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
