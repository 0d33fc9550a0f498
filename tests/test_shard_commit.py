"""A shard's tables are published all or nothing: racing or crashed attempts never mix their files.

The real pipeline runs each attempt (real model, real Parquet, moto over HTTP for S3); only the order
in which the attempts' writes reach the store is forced, so the race is the same on every run.
"""

from __future__ import annotations

import threading

import pytest

from conftest import S3_CONN_ID

pytestmark = pytest.mark.slow
WAIT_S = 300  # only guards against a deadlocked schedule; never reached when the code is right


class Killed(Exception):
    """Stands for a worker that died at this write."""


class ScheduledStore:
    """The real output storage, with the writes of named attempts (threads) let through in a set order.

    ``schedule`` lists ``(attempt, kind)``, kind being a table name or ``commit`` (any write under
    ``commits/``); ``crash`` is one such step that raises instead of writing. Other writes pass.
    """

    def __init__(self, inner, out: str, schedule: list[tuple[str, str]], crash: tuple[str, str] | None = None):
        self.inner, self.out, self.schedule, self.crash = inner, out.rstrip("/") + "/", list(schedule), crash
        self.turn = threading.Condition()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write_bytes(self, uri: str, data: bytes, **options) -> bool:
        step = (threading.current_thread().name, self._kind(uri))
        if step == self.crash:
            raise Killed(uri)
        if step not in self.schedule:
            return self.inner.write_bytes(uri, data, **options)
        with self.turn:
            if not self.turn.wait_for(lambda: self.schedule[0] == step, timeout=WAIT_S):
                raise AssertionError(f"schedule stuck at {self.schedule[0]}, {step} waiting")
            try:
                return self.inner.write_bytes(uri, data, **options)
            finally:
                self.schedule.pop(0)
                self.turn.notify_all()

    def _kind(self, uri: str) -> str:
        top = uri[len(self.out):].split("/", 1)[0] if uri.startswith(self.out) else ""
        return "commit" if top == "commits" else top


@pytest.fixture(params=["file", "s3"])
def output(request, tmp_path, footage):
    """A recording and an output location, on a local folder or on the S3 endpoint."""
    from vigil.uri import file_uri

    if request.param == "file":
        source = tmp_path / "in" / "corridor.mp4"
        source.parent.mkdir()
        source.write_bytes(footage.read_bytes())
        return {"source": file_uri(source), "out": file_uri(tmp_path / "out"), "conn_id": None}
    s3 = request.getfixturevalue("s3_storage")
    s3.write_bytes(f"s3://{s3.buckets['source']}/cam/corridor.mp4", footage.read_bytes())
    return {"source": f"s3://{s3.buckets['source']}/cam/corridor.mp4", "out": f"s3://{s3.buckets['out']}/vigil", "conn_id": S3_CONN_ID}


def _shards(output) -> list:
    # ONNX Runtime: both attempts run in one process here, and the direct OpenVINO detector (one
    # cached pool of infer requests) refuses a second thread ("Infer Request is busy").
    from vigil.config import ProcessParams, RunRequest
    from vigil.orchestration import planning

    request = RunRequest(sources=(output["source"],), out=output["out"], params=ProcessParams(sample_fps=0.5, shard_seconds=60, runtime="onnx"),
                         source_conn_id=output["conn_id"], out_conn_id=output["conn_id"])  # fmt: skip
    return planning.plan_all(request, planning.discover(request))["shards"]


def _run_attempts(monkeypatch, output, task, store: ScheduledStore, tries: dict[str, int]) -> dict:
    """Run ``detect_shard`` once per attempt name, each in its own thread, through ``store``."""
    from vigil.orchestration import pipeline

    real = pipeline.storage_for
    monkeypatch.setattr(pipeline, "storage_for", lambda uri, conn=None: store if uri == output["out"] else real(uri, conn))
    outcome = {}

    def attempt(name: str) -> None:
        try:
            outcome[name] = pipeline.detect_shard(task, {"dag_id": "vigil_process", "try_number": tries[name]})
        except Exception as error:
            outcome[name] = error

    threads = [threading.Thread(target=attempt, args=(name,), name=name) for name in tries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.setattr(pipeline, "storage_for", real)
    return outcome


def _tries_of(storage, result) -> set:
    """Which attempt wrote each published table of a shard (its provenance names the try)."""
    from vigil.store.sink import read_provenance

    return {read_provenance(storage.read_bytes(entry.uri))["airflow"]["try_number"] for entry in result.files.values()}


def _finalize_and_verify(storage, output, shards, raced):
    from vigil.orchestration import pipeline
    from vigil.orchestration.finalize import finalize
    from vigil.store.integrity import verify

    results = [raced] + [pipeline.detect_shard(task) for task in shards if task.shard.index != raced.shard.index]
    finalize(results)
    report = verify(storage, output["out"])
    assert report.ok, report.problems
    return report


def test_two_racing_attempts_publish_one_attempts_tables(monkeypatch, output):
    """A wins detections and B wins frames (the old per-table race); B commits first: both report
    B's tables, A's files are gone, and the recording finalizes and verifies."""
    from vigil.store.storage import storage_for

    shards = _shards(output)
    storage = storage_for(output["out"], output["conn_id"])
    schedule = [("A", "detections"), ("B", "detections"), ("B", "frames"), ("A", "frames"), ("B", "commit"), ("A", "commit")]
    store = ScheduledStore(storage, output["out"], schedule)
    outcome = _run_attempts(monkeypatch, output, shards[1], store, {"A": 1, "B": 2})

    assert not [e for e in outcome.values() if isinstance(e, Exception)], outcome
    assert outcome["A"].files == outcome["B"].files, "both attempts report the same tables"
    assert _tries_of(storage, outcome["A"]) == {2}, "every table of the shard is attempt B's"
    published = sorted(i.uri for table in ("detections", "frames") for i in storage.list(f"{output['out']}/{table}"))
    assert published == sorted(e.uri for e in outcome["B"].files.values()), "the losing attempt's files are deleted"
    _finalize_and_verify(storage, output, shards, outcome["A"])


def test_a_crashed_attempt_is_not_used_and_a_retry_completes(monkeypatch, output):
    """Attempt A dies after writing its detections (no frames, no marker); the retry B publishes
    its own two tables, and A's leftover is listed by no manifest (verify only notes it)."""
    from vigil.store.storage import storage_for

    shards = _shards(output)
    storage = storage_for(output["out"], output["conn_id"])
    crashed = _run_attempts(monkeypatch, output, shards[1], ScheduledStore(storage, output["out"], [], crash=("A", "frames")), {"A": 1})
    assert isinstance(crashed["A"], Killed)
    leftovers = [i.uri for i in storage.list(f"{output['out']}/detections")]
    assert len(leftovers) == 1

    retried = _run_attempts(monkeypatch, output, shards[1], ScheduledStore(storage, output["out"], []), {"B": 2})["B"]
    assert not isinstance(retried, Exception), retried
    assert _tries_of(storage, retried) == {2}, "the retry's tables only, none of the crashed attempt's"
    assert leftovers[0] not in {e.uri for e in retried.files.values()}
    report = _finalize_and_verify(storage, output, shards, retried)
    assert any(leftovers[0] in note for note in report.notes), report.notes
