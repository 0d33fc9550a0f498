"""Issue #12: what a trigger user, a planted file, a hostile file name or SQL can do — and now cannot.

Each test reproduces an attack from the issue against real parts (files, the moto S3 server,
DuckDB, the trigger-form validation) and asserts it is refused. The UI plugin's own attacks are
in test_plugin.py.
"""

from __future__ import annotations

import os

import pytest

from conftest import FOOTAGE_SHA256, S3_CONN_ID
from vigil.config import ProcessParams, RunRequest
from vigil.errors import IntegrityError, ParameterError

OPERATOR_SETTINGS = ("VIGIL_ALLOWED_BUCKETS", "VIGIL_ALLOWED_ROOTS", "VIGIL_ALLOWED_CONN_IDS", "VIGIL_MODEL_DIRS",
                     "VIGIL_S3_CONN_ID")  # fmt: skip


@pytest.fixture(autouse=True)
def _no_operator_settings(monkeypatch):
    for name in OPERATOR_SETTINGS:
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------- 2. a trigger user cannot run code


def _trigger(**conf):
    """What the Airflow trigger form hands the plan task (declared keys, defaults filled in)."""
    from vigil.orchestration.trigger import process_params, run_request_from

    declared = process_params()
    params = {k: p.value if hasattr(p, "value") else p for k, p in declared.items()}
    params.update(conf)
    return run_request_from(params, conf, set(declared))


def test_allow_list_covers_local_paths_and_the_model_once_set(monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIL_ALLOWED_BUCKETS", "evidence-intake,vigil-results")
    ok = dict(sources=("s3://evidence-intake/drop/",), out="s3://vigil-results/out")
    RunRequest(**ok)
    refused = [
        dict(ok, sources=("file:///etc/",)),  # any local path, once the operator restricts buckets
        dict(ok, out=f"file://{tmp_path}/out"),
        dict(ok, params=ProcessParams(model="s3://other-bucket/x.pt", model_sha256="0" * 64)),
    ]
    for values in refused:
        with pytest.raises(ParameterError, match="VIGIL_ALLOWED_(BUCKETS|ROOTS)"):
            RunRequest(**values)
    (tmp_path / "drops").mkdir()
    (tmp_path / "drops" / "etc").symlink_to("/etc")
    monkeypatch.setenv("VIGIL_ALLOWED_ROOTS", f"{tmp_path}/drops, {tmp_path}/out")
    RunRequest(sources=(f"file://{tmp_path}/drops/cam1/",), out=f"file://{tmp_path}/out/")
    for source in (f"file://{tmp_path}/drops/etc/", f"file://{tmp_path}/drops/../../etc", f"file://{tmp_path}/dropsX/"):
        with pytest.raises(ParameterError):
            RunRequest(sources=(source,), out=f"file://{tmp_path}/out/")


def test_a_trigger_picks_neither_the_connection_nor_the_weights(monkeypatch, tmp_path):
    base = {"sources": ["s3://evidence-intake/drop/"], "out": "s3://vigil-results/out"}
    with pytest.raises(ParameterError, match="VIGIL_ALLOWED_CONN_IDS"):
        _trigger(**base, conn_id="aws_default")
    monkeypatch.setenv("VIGIL_S3_CONN_ID", S3_CONN_ID)  # the deployment's own connection is allowed
    assert _trigger(**base, conn_id=S3_CONN_ID).source_conn_id == S3_CONN_ID
    monkeypatch.setenv("VIGIL_ALLOWED_CONN_IDS", "archive")
    assert _trigger(**base, conn_id="archive").out_conn_id == "archive"
    payload = tmp_path / "payload.pt"
    payload.write_bytes(b"pickle")
    with pytest.raises(ParameterError, match="VIGIL_MODEL_DIRS"):
        _trigger(**base, model=str(payload), model_sha256="0" * 64)
    monkeypatch.setenv("VIGIL_MODEL_DIRS", str(tmp_path))
    assert _trigger(**base, model=str(payload), model_sha256="0" * 64).params.model == str(payload)


# ---------------------------------------------------------------- 6. paths are normalised, symlinks stay in


def test_is_within_normalises_slashes_and_refuses_dot_segments():
    from vigil.uri import is_within, normalise_uri

    assert is_within("file:///x//src/out", "file:///x/src/")
    assert is_within("file:///x/src/out/", "file:///x//src")
    assert not is_within("file:///x/srcs/out", "file:///x/src")
    with pytest.raises(ParameterError, match="'..'"):
        is_within("file:///x/src/../etc", "file:///x/src")
    assert normalise_uri("file:///a//b c/") == normalise_uri("file:///a/b%20c") == "file:///a/b%20c"
    with pytest.raises(ParameterError, match="inside source"):
        RunRequest(sources=("file:///x/src/",), out="file:///x//src/out")


def test_a_symlink_planted_in_a_drop_folder_is_not_followed_out_of_it(tmp_path, footage):
    from vigil.store.file_backend import FileStorage
    from vigil.uri import file_uri

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.mp4").write_bytes(footage.read_bytes())
    drop = tmp_path / "drop"
    (drop / "sub").mkdir(parents=True)
    (drop / "cam1.mp4").write_bytes(b"x")
    (drop / "planted.mp4").symlink_to(elsewhere / "secret.mp4")
    (drop / "linked-dir").symlink_to(elsewhere)
    (drop / "sub" / "same.mp4").symlink_to(drop / "cam1.mp4")  # a link inside the drop is fine
    listed = {info.uri for info in FileStorage().list(file_uri(drop))}
    assert listed == {file_uri(drop / "cam1.mp4"), file_uri(drop / "sub" / "same.mp4")}


# ---------------------------------------------------------------- 7. S3 keys round-trip exactly


HOSTILE_KEYS = ["drop/cam%2Fx.mp4", "drop/cam/x.mp4", "drop/50%25 off.mp4", "drop/a#b?c.mp4", "drop/späť ü 1.mp4",
                "/drop/lead.mp4", "drop/lead.mp4", "drop/+plus=eq@.mp4"]  # fmt: skip


def test_hostile_s3_keys_round_trip_through_listing_parsing_and_reading(s3_storage):
    from vigil.uri import parse_uri

    bucket = s3_storage.buckets["source"]
    for number, key in enumerate(HOSTILE_KEYS):  # each object's bytes say which key it is
        s3_storage.client.put_object(Bucket=bucket, Key=key, Body=f"{number}:{key}".encode())
    listed = s3_storage.list(f"s3://{bucket}/")
    assert sorted(parse_uri(info.uri).key for info in listed) == sorted(HOSTILE_KEYS)
    for info in listed:
        key = parse_uri(info.uri).key
        expected = f"{HOSTILE_KEYS.index(key)}:{key}".encode()
        assert s3_storage.read_bytes(info.uri) == expected, info.uri
        assert s3_storage.stat(info.uri).uri == info.uri  # one spelling, whichever way it was reached
        with s3_storage.open(info.uri, etag=info.etag) as handle:
            assert handle.read() == expected


def test_an_s3_key_with_dot_segments_is_refused_not_resolved(s3_storage):
    from vigil.uri import parse_uri

    bucket = s3_storage.buckets["source"]
    s3_storage.client.put_object(Bucket=bucket, Key="drop/../x.mp4", Body=b"hidden")
    s3_storage.client.put_object(Bucket=bucket, Key="x.mp4", Body=b"other")
    (info,) = [i for i in s3_storage.list(f"s3://{bucket}/drop/")]
    with pytest.raises(ParameterError, match="'..'"):
        parse_uri(info.uri)


# ---------------------------------------------------------------- 8. local sources are pinned


def test_a_local_file_replaced_by_one_of_the_same_size_no_longer_opens(tmp_path):
    from vigil.store.file_backend import FileStorage
    from vigil.uri import file_uri

    path = tmp_path / "cam.mp4"
    path.write_bytes(b"original")
    storage = FileStorage()
    planned = storage.stat(file_uri(path))
    storage.open(planned.uri, etag=planned.etag).close()
    replacement = tmp_path / "other"
    replacement.write_bytes(b"replaced")  # same size
    os.utime(replacement, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))  # and same mtime
    os.replace(replacement, path)
    with pytest.raises(IntegrityError, match="changed"):
        storage.open(planned.uri, etag=planned.etag)
    pinned = storage.stat(planned.uri)
    path.write_bytes(b"rewrite!")  # in place: same inode, same size, a later mtime
    later = pinned.etag.split("-")[1]
    os.utime(path, ns=(int(later) + 1_000_000_000, int(later) + 1_000_000_000))  # not within the same clock tick
    assert storage.stat(planned.uri).etag.split("-")[2] == pinned.etag.split("-")[2]  # the same inode
    with pytest.raises(IntegrityError, match="changed"):
        storage.open(planned.uri, etag=pinned.etag)


# ---------------------------------------------------------------- 3. expected hashes are never skipped


@pytest.fixture
def drop(tmp_path, footage):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "cam 1.mp4").write_bytes(footage.read_bytes())
    (tmp_path / "via-link").symlink_to(folder)
    return tmp_path


@pytest.mark.parametrize("written", ["file://{root}/drop/cam 1.mp4", "file://{root}/drop//cam%201.mp4",
                                     "file://{root}/via-link/cam 1.mp4"])  # fmt: skip
def test_a_wrong_expected_hash_stops_the_recording_however_its_uri_is_written(drop, written):
    from vigil.orchestration import planning
    from vigil.uri import file_uri

    request = RunRequest(sources=(file_uri(drop / "drop"),), out=file_uri(drop / "out"),
                         expected_sha256={written.format(root=drop): "ab" * 32})  # fmt: skip
    (found,) = planning.discover(request)
    with pytest.raises(IntegrityError, match="not analysed"):
        planning.plan(found, request)
    right = RunRequest(sources=request.sources, out=request.out, expected_sha256={written.format(root=drop): FOOTAGE_SHA256})
    assert planning.plan(found, right)


def test_an_expected_hash_that_matches_no_recording_stops_the_run(drop):
    from vigil.orchestration import planning
    from vigil.uri import file_uri

    request = RunRequest(sources=(file_uri(drop / "drop"),), out=file_uri(drop / "out"),
                         expected_sha256={f"file://{drop}/drop/cam1.mp4": FOOTAGE_SHA256})  # fmt: skip
    with pytest.raises(ParameterError, match="no such recording"):
        planning.discover(request)


# ---------------------------------------------------------------- 12. raw SQL sees the tables only


def test_raw_sql_can_neither_read_files_nor_write_them(tmp_path):
    import duckdb

    from vigil.review import query
    from vigil.uri import file_uri

    con = query.connect(file_uri(tmp_path / "empty-output"))
    assert query.run_sql(con, "SELECT count(*) FROM detections").rows == [(0,)]
    target = tmp_path / "copied.csv"
    for sql in ("SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM '/etc/passwd'",
                f"COPY detections TO '{target}'", "ATTACH '/tmp/x.db'", "INSTALL httpfs",
                "SET enable_external_access = true", "SET lock_configuration = false"):  # fmt: skip
        with pytest.raises(duckdb.Error):
            query.run_sql(con, sql)
    assert not target.exists()


# ---------------------------------------------------------------- 10. one bad input fails alone


def test_a_duplicate_and_an_impossible_date_fail_alone(tmp_path, footage, monkeypatch):
    from vigil.orchestration import planning
    from vigil.uri import file_uri

    for folder, name in (("a", "cam_20240301_221500.mp4"), ("b", "cam_20240301_221500.mp4"), ("c", "cam_20240231_000000.mp4")):
        (tmp_path / "drop" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "drop" / folder / name).write_bytes(footage.read_bytes())
    monkeypatch.setenv("VIGIL_FILENAME_START", r"(?P<Y>\d{4})(?P<m>\d\d)(?P<d>\d\d)_(?P<H>\d\d)(?P<M>\d\d)(?P<S>\d\d)")
    request = RunRequest(sources=(file_uri(tmp_path / "drop"),), out=file_uri(tmp_path / "out"),
                         params=ProcessParams(sample_fps=0.5, shard_seconds=60))  # fmt: skip
    planned = planning.plan_all(request, planning.discover(request))
    assert {s.plan.source.uri for s in planned["shards"]} == {file_uri(tmp_path / "drop" / "a" / "cam_20240301_221500.mp4")}
    reasons = {f["uri"].split("/drop/")[1]: f["error"] for f in planned["failed"]}
    assert set(reasons) == {"b/cam_20240301_221500.mp4", "c/cam_20240231_000000.mp4"}
    assert "same file name and content" in reasons["b/cam_20240301_221500.mp4"]
    assert "no valid start time" in reasons["c/cam_20240231_000000.mp4"]


# ---------------------------------------------------------------- 5 (timeouts). no hang blocks later nights


def test_plan_and_finalize_time_out_and_a_nightly_run_ends_before_the_next_night():
    from datetime import timedelta

    from airflow.dag_processing.dagbag import DagBag

    from conftest import ROOT

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    for dag_id in ("vigil_process", "vigil_nightly"):
        dag = bag.dags[dag_id]
        for task_id in ("plan", "finalize"):
            timeout = dag.get_task(task_id).execution_timeout
            assert timeout is not None and timeout <= timedelta(hours=2), (dag_id, task_id)
    nightly = bag.dags["vigil_nightly"]
    assert nightly.max_active_runs == 1
    assert nightly.dagrun_timeout is not None and nightly.dagrun_timeout < timedelta(hours=24)
