"""How many times over a run reads each recording from S3, counted at the endpoint (issue 17, item 4).

A byte-counting proxy sits between vigil and the moto S3 server; the recording is built from the
sample footage (copies back to back, stream copy, MP4 index at the end as recorders write it).
The run over S3 must give exactly what the same run gives over file://, which reads the local
file directly: the reads are cut, never the results.
"""

from __future__ import annotations

import json
import os

import pytest

from byte_counter import ByteCounter
from conftest import FOOTAGE

pytestmark = pytest.mark.slow

COUNTED_CONN_ID = "vigil_counted_s3"


def process_counted(proxy: ByteCounter, storage, recording, key: str, out: str, shard_seconds: float,
                    sample_fps: float) -> dict:  # fmt: skip
    """Upload ``recording``, run plan, shards and finalize on it through ``proxy``; return the bytes
    of it read in each phase, as multiples of its size."""
    from vigil.config import ProcessParams, RunRequest
    from vigil.orchestration import pipeline, planning
    from vigil.orchestration.finalize import finalize

    bucket = storage.buckets["source"]
    storage.client.upload_file(str(recording), bucket, key)
    size = os.path.getsize(recording)
    request = RunRequest(
        sources=(f"s3://{bucket}/{key}",), out=out,
        params=ProcessParams(sample_fps=sample_fps, shard_seconds=shard_seconds),
        source_conn_id=COUNTED_CONN_ID, out_conn_id=COUNTED_CONN_ID,
    )  # fmt: skip
    counted = f"{bucket}/{key}"
    before = proxy.read(counted)
    planned = planning.plan_all(request, planning.discover(request))
    assert not planned["failed"], planned["failed"]
    after_plan = proxy.read(counted)
    results = [pipeline.detect_shard(task) for task in planned["shards"]]
    after_shards = proxy.read(counted)
    finalize(results)
    after_finalize = proxy.read(counted)
    return {
        "size": size,
        "shards": len(results),
        "plan": (after_plan - before) / size,
        "shard_pass": (after_shards - after_plan) / size,
        "finalize": (after_finalize - after_shards) / size,
        "total": (after_finalize - before) / size,
        "requests": proxy.requests[counted],
    }


@pytest.fixture
def counted_endpoint(s3_endpoint):
    with ByteCounter(s3_endpoint) as proxy:
        os.environ[f"AIRFLOW_CONN_{COUNTED_CONN_ID.upper()}"] = json.dumps({
            "conn_type": "aws", "login": "testing-key", "password": "testing-secret",
            "extra": {"endpoint_url": proxy.url, "region_name": "us-east-1"},
        })  # fmt: skip
        yield proxy
        os.environ.pop(f"AIRFLOW_CONN_{COUNTED_CONN_ID.upper()}", None)


def _outputs(out: str, conn_id: str | None) -> dict:
    """What a run produced that must not depend on how the source was read."""
    from vigil.review import query
    from vigil.store.storage import storage_for
    from vigil.uri import join_uri

    (manifest,) = query.manifests(out, conn_id)
    db = query.connect(out, conn_id)
    storage = storage_for(out, conn_id)
    tables = {
        "frames": db.execute("SELECT * EXCLUDE (recording_id) FROM frames ORDER BY pts_s").fetchall(),
        "detections": db.execute("SELECT * EXCLUDE (recording_id, source_uri) FROM detections "
                                 "ORDER BY pts_s, det_index").fetchall(),  # fmt: skip
        "tracks": db.execute("SELECT * EXCLUDE (recording_id) FROM tracks ORDER BY track_id").fetchall(),
        "appearance": db.execute("SELECT * EXCLUDE (recording_id) FROM track_appearance ORDER BY track_id").fetchall(),
    }
    pictures = {name: storage.read_bytes(join_uri(out, entry["path"]))
                for name, entry in manifest.artifacts.items()
                if name not in ("report.html", "timeline.png")}  # these two print the source URI  # fmt: skip
    return {"coverage": manifest.coverage, "tables": tables, "pictures": pictures,
            "sampled_frames": manifest.totals["sampled_frames"]}  # fmt: skip


# Measured 2.078x and 2.117x; the goal is 2.1x and 2.5x (README "Scale": the shards read
# the MP4 index from its copy in the output store, review pictures only their frames' bytes).
@pytest.mark.parametrize(("copies", "shard_seconds", "bound"), [(26, 600, 2.1), (5, 60, 2.2)])
def test_a_run_reads_each_recording_about_twice(tmp_path, s3_storage, counted_endpoint, copies, shard_seconds, bound):
    from vigil.media.remux import concat_copies
    from vigil.orchestration import pipeline, planning
    from vigil.orchestration.finalize import finalize
    from vigil.config import ProcessParams, RunRequest
    from vigil.uri import file_uri

    recording = concat_copies(FOOTAGE, tmp_path / f"corridor-x{copies}.mp4", copies=copies)
    sample_fps = 0.2
    out = f"s3://{s3_storage.buckets['out']}/results"
    figures = process_counted(counted_endpoint, s3_storage, recording, recording.name, out, shard_seconds, sample_fps)
    print(f"bytes read per recording byte, {copies} copies at {shard_seconds}-s shards: {figures}")
    assert figures["plan"] >= 1.0, "the hash reads the whole recording: the counter must have seen it"
    assert figures["total"] <= bound, figures

    local = RunRequest(sources=(file_uri(recording),), out=file_uri(tmp_path / "out"),
                       params=ProcessParams(sample_fps=sample_fps, shard_seconds=shard_seconds))  # fmt: skip
    planned = planning.plan_all(local, planning.discover(local))
    finalize([pipeline.detect_shard(task) for task in planned["shards"]])
    over_s3, over_file = _outputs(out, COUNTED_CONN_ID), _outputs(file_uri(tmp_path / "out"), None)
    assert over_s3["pictures"] and over_s3["tables"]["detections"], "nothing to compare: the footage has people"
    for part in over_s3:
        if part in ("pictures", "tables"):
            for name in over_s3[part]:
                assert over_s3[part][name] == over_file[part].get(name), (part, name)
        assert over_s3[part] == over_file[part], part
