"""End to end through Airflow itself (dag.test on SQLite) on the real footage and the real model,
against the embedded file:// storage and an S3 endpoint over HTTP."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import FOOTAGE_SHA256, S3_CONN_ID, ROOT

pytestmark = pytest.mark.slow


def _dag(dag_id):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags")).dags[dag_id]


def _run(dag_id, conf):
    return _dag(dag_id).test(run_conf=conf)


def _state(run) -> str:
    return str(getattr(run.state, "value", run.state))


def _rows(out, conn_id=None):
    from vigil.review import query

    con = query.connect(out, conn_id)
    detections = con.execute(
        "SELECT frame_index, det_index, pts_s, confidence, x1, y1, x2, y2, kp_x, kp_y, kp_conf, source_uri, "
        "recording_id FROM detections ORDER BY frame_index, det_index"
    ).fetchall()
    frames = con.execute("SELECT frame_index, pts_s, persons, status FROM frames ORDER BY frame_index").fetchall()
    return detections, frames


@pytest.fixture(scope="module")
def file_run(airflow_db, footage, tmp_path_factory):
    """vigil_process through Airflow on file://, 30-second shards, 2 sampled frames per second."""
    from vigil.uri import file_uri

    base = tmp_path_factory.mktemp("file-run")
    (base / "source").mkdir()
    shutil.copy(footage, base / "source" / "corridor.mp4")
    conf = {"sources": [file_uri(base / "source") + "/"], "out": file_uri(base / "out"), "shard_seconds": 30}
    run = _run("vigil_process", conf)
    return {"run": run, "out": conf["out"], "source": base / "source" / "corridor.mp4"}


def test_process_dag_on_file_storage_finds_people(file_run):
    assert _state(file_run["run"]) == "success"
    detections, frames = _rows(file_run["out"])
    assert len(frames) == 279  # 139.4 s at 2 fps
    assert all(status == "ok" for *_, status in frames)
    with_people = [f for f in frames if f[2] > 0]
    assert 150 < len(with_people) < 279, "people walk through in most, not all, of the footage"
    assert len(detections) == sum(f[2] for f in frames)
    assert {d[-1] for d in detections} == {f"corridor-{FOOTAGE_SHA256[:12]}"}


def test_manifest_lists_every_shard_file_with_its_hash(file_run):
    from vigil.store.file_backend import FileStorage
    from vigil.uri import join_uri

    from vigil.store.layout import manifest_uris

    storage = FileStorage()
    (manifest_uri,) = manifest_uris(storage, file_run["out"])
    assert manifest_uri.rsplit("/", 1)[1].startswith(f"corridor-{FOOTAGE_SHA256[:12]}.")
    manifest = json.loads(storage.read_bytes(manifest_uri))
    assert manifest["source"]["sha256"] == FOOTAGE_SHA256
    assert [(s["start_s"], s["end_s"]) for s in manifest["shards"]] == [
        (0.0, 30.0), (30.0, 60.0), (60.0, 90.0), (90.0, 120.0), (120.0, 139.4)
    ]  # fmt: skip
    import hashlib

    for shard in manifest["shards"]:
        for entry in shard["files"].values():
            assert hashlib.sha256(storage.read_bytes(join_uri(file_run["out"], entry["path"]))).hexdigest() == entry["sha256"]
    assert manifest["totals"]["sampled_frames"] == 279


def test_shard_files_carry_provenance(file_run):
    from vigil.store.sink import read_provenance
    from vigil.store.file_backend import FileStorage
    from vigil.uri import file_uri

    storage = FileStorage()
    shard_files = [i for i in storage.list(file_run["out"]) if "/shard-" in i.uri and i.uri.endswith(".parquet")]
    assert len(shard_files) == 10  # 5 shards x (detections, frames)
    provenance = read_provenance(storage.read_bytes(shard_files[0].uri))
    assert provenance["source"]["sha256"] == FOOTAGE_SHA256
    assert provenance["source"]["uri"] == file_uri(file_run["source"])
    assert provenance["model"]["sha256"] == "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"
    assert provenance["params"]["sample_fps"] == 2.0
    assert provenance["airflow"]["dag_id"] == "vigil_process"
    assert {"ultralytics", "torch", "av", "ffmpeg", "pyarrow", "vigil"} <= set(provenance["versions"])
    from vigil.review import query
    from vigil.model.detector import choose_runtime, cpu_has_native_bf16, instruction_path
    from vigil.config import ProcessParams

    # Every row says which runtime computed it, in which precision on which instructions: the ones the
    # hardware chose (OpenVINO in BF16 where the CPU has it, else FP32), as the file's provenance says.
    auto, runtime = choose_runtime(ProcessParams()), provenance["runtime"]
    prefix = {"openvino": "openvino-", "onnx": "onnxruntime-"}[auto]
    precision = "bf16" if auto == "openvino" and cpu_has_native_bf16() else "f32"
    assert runtime.startswith(prefix) and runtime.endswith(f"/cpu/{instruction_path(precision)}"), runtime
    con = query.connect(file_run["out"])
    for table in ("detections", "frames"):
        assert {r for (r,) in con.execute(f"SELECT DISTINCT runtime FROM {table}").fetchall()} == {provenance["runtime"]}


def test_detections_do_not_depend_on_shard_length(file_run, tmp_path):
    """The same footage as one 600-second shard through the CLI: same frames, same boxes."""
    from vigil.cli import main
    from vigil.uri import file_uri

    out = file_uri(tmp_path / "one-shard")
    assert main(["process", file_uri(file_run["source"]), "--out", out, "--shard-seconds", "600"]) == 0
    sharded_detections, sharded_frames = _rows(file_run["out"])
    whole_detections, whole_frames = _rows(out)
    assert [f[:3] for f in whole_frames] == [f[:3] for f in sharded_frames]
    assert [d[:3] for d in whole_detections] == [d[:3] for d in sharded_detections]
    whole = np.array([d[3:8] for d in whole_detections])
    sharded = np.array([d[3:8] for d in sharded_detections])
    assert np.abs(whole[:, 1:] - sharded[:, 1:]).max() <= 1e-3, "boxes agree to 1e-3 px"
    assert np.abs(whole[:, 0] - sharded[:, 0]).max() <= 1e-4
    keypoints_whole = np.array([d[8] + d[9] for d in whole_detections])
    keypoints_sharded = np.array([d[8] + d[9] for d in sharded_detections])
    assert np.abs(keypoints_whole - keypoints_sharded).max() <= 1e-3


def test_query_answers_presence_and_counts(file_run):
    from vigil.review import query

    con = query.connect(file_run["out"])
    presence = query.presence(con, query.Window("corridor"))
    assert len(presence.rows) == 6  # six people walk through, one after another
    starts = [row[2] for row in presence.rows]
    assert starts == sorted(starts)
    per_minute = query.counts(con, query.Window("corridor"), 60)
    assert [row[3] for row in per_minute.rows] == [120, 120, 39]
    window = query.detections(con, query.Window("corridor", query.parse_time("00:30"), query.parse_time("00:32")))
    assert {row[2] for row in window.rows} <= {30.0, 30.5, 31.0, 31.5} and window.rows


def test_process_dag_on_s3_matches_file_storage(file_run, s3_storage, footage, monkeypatch):
    monkeypatch.setenv("VIGIL_ALLOWED_CONN_IDS", S3_CONN_ID)  # the operator allows the trigger to name it
    bucket_in, bucket_out = s3_storage.buckets["source"], s3_storage.buckets["out"]
    s3_storage.write_bytes(f"s3://{bucket_in}/drops/2024-03/corridor.mp4", footage.read_bytes())
    out = f"s3://{bucket_out}/vigil"
    conf = {"sources": [f"s3://{bucket_in}/drops/2024-03/"], "out": out, "shard_seconds": 30, "conn_id": S3_CONN_ID}
    assert _state(_run("vigil_process", conf)) == "success"
    s3_detections, s3_frames = _rows(out, S3_CONN_ID)
    file_detections, file_frames = _rows(file_run["out"])
    assert s3_frames == file_frames
    assert [d[:-2] for d in s3_detections] == [d[:-2] for d in file_detections]
    assert {d[-2] for d in s3_detections} == {f"s3://{bucket_in}/drops/2024-03/corridor.mp4"}
    assert s3_storage.read_bytes(f"s3://{bucket_in}/drops/2024-03/corridor.mp4") == footage.read_bytes()


# ------------------------------------------------------------------------ refused and broken


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"sample_fps": -1}, "sample_fps"),
        ({"shard_seconds": 0}, "shard_seconds"),
        ({"sources": ["/data/drop/"]}, "sources"),
        ({"out": "ftp://host/out"}, "out"),
    ],
)
def test_trigger_form_rejects_invalid_values(airflow_db, conf, message):
    from airflow.sdk.definitions.param import ParamValidationError

    base = {"sources": ["file:///tmp/vigil-drop/"], "out": "file:///tmp/vigil-out"}
    with pytest.raises(ParamValidationError, match=message):
        _run("vigil_process", {**base, **conf})


@pytest.mark.parametrize(
    "extra, where",
    [({"shard_secs": 30}, "unknown key"), ({}, "output inside source")],
)
def test_run_is_refused_before_any_work(airflow_db, tmp_path, footage, extra, where):
    from vigil.uri import file_uri

    (tmp_path / "drop").mkdir()
    shutil.copy(footage, tmp_path / "drop" / "corridor.mp4")
    out = tmp_path / "drop" / "results" if where == "output inside source" else tmp_path / "out"
    conf = {"sources": [file_uri(tmp_path / "drop")], "out": file_uri(out), **extra}
    assert _state(_run("vigil_process", conf)) == "failed"
    assert not out.exists(), "nothing may be written for a refused run"
    assert sorted(p.name for p in (tmp_path / "drop").iterdir()) == ["corridor.mp4"]


def test_a_broken_recording_fails_alone(airflow_db, tmp_path, footage):
    from vigil.orchestration import planning
    from vigil.config import ProcessParams, RunRequest
    from vigil.uri import file_uri

    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(footage, drop / "good.mp4")
    (drop / "broken.mp4").write_text("a text file named like a video\n")
    conf = {"sources": [file_uri(drop)], "out": file_uri(tmp_path / "out"), "sample_fps": 0.5, "shard_seconds": 60}
    assert _state(_run("vigil_process", conf)) == "failed"
    manifests = sorted(p.name for p in (tmp_path / "out" / "manifests").iterdir())
    assert [name.split(".")[0] for name in manifests] == [f"good-{FOOTAGE_SHA256[:12]}"]  # <id>.<run key>.json
    # The failure names the file and the reason.
    request = RunRequest(sources=(file_uri(drop),), out=file_uri(tmp_path / "out2"), params=ProcessParams(sample_fps=0.5))
    failed = planning.plan_all(request, planning.discover(request))["failed"]
    assert [f["uri"] for f in failed] == [file_uri(drop / "broken.mp4")]
    assert "not a readable media container" in failed[0]["error"]


def test_nightly_processes_only_new_recordings(airflow_db, tmp_path, footage):
    from vigil.uri import file_uri

    source, out = tmp_path / "incoming", tmp_path / "out"
    source.mkdir()
    shutil.copy(footage, source / "cam1.mp4")
    conf = {"sources": [file_uri(source)], "out": file_uri(out), "sample_fps": 0.5, "shard_seconds": 60}
    assert _state(_run("vigil_nightly", conf)) == "success"
    (manifest,) = (out / "manifests").glob(f"cam1-{FOOTAGE_SHA256[:12]}.*.json")
    first = manifest.read_bytes()
    assert _state(_run("vigil_nightly", conf)) == "success"
    assert manifest.read_bytes() == first, "an already processed recording is not processed again"


def test_asset_event_holds_the_ledger_head_and_verify_checks_against_it(file_run):
    """The metadata database keeps an independent copy of the ledger head: `verify --head` uses it."""
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from vigil.store import ledger
    from vigil.store.file_backend import FileStorage

    with create_session() as session:
        extras = [e.extra for e in session.scalars(select(AssetEvent).order_by(AssetEvent.id))]
    heads = [x["ledger_head"] for x in extras if file_run["out"] + "/" in json.dumps(x) and "ledger_head" in x]
    assert heads, extras
    recorded = ledger.Head.parse(heads[-1])
    storage = FileStorage()
    assert ledger.head(storage, file_run["out"]) == recorded
    assert ledger.check_chain(storage, file_run["out"], None, recorded).problems == []
    from vigil.uri import parse_uri
    from pathlib import Path

    Path(parse_uri(ledger.entry_uri(file_run["out"], recorded.seq)).key).write_bytes(b'{"seq": 1}\n')
    problems = ledger.check_chain(storage, file_run["out"], None, recorded).problems
    assert any("differs (the ledger was rewritten)" in p for p in problems)
