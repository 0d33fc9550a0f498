"""One trigger, any drop (issue #17): batching within Airflow's map limit, the nightly cap, and a
drop needing more shards and more recordings than ``max_map_length`` run end to end through
Airflow (dag.test on SQLite) from one trigger."""

from __future__ import annotations

import json
import shutil

import pytest

from vigil.orchestration import drop


def _shard(recording: str, index: int) -> dict:
    return {"plan": {"recording_id": recording, "generation": None}, "shard": {"index": index}}


@pytest.mark.parametrize("limit", [1, 3, 4, 7, 1024])
def test_even_batches_keep_every_item_once_in_order_within_the_limit(limit):
    items = list(range(10))
    batches = drop.even_batches(items, limit)
    assert len(batches) <= limit
    assert [i for b in batches for i in b] == items
    assert drop.even_batches([], limit) == []


@pytest.mark.parametrize("sizes, limit", [([5, 5, 5], 4), ([1, 9, 2], 5), ([3] * 6, 4), ([7], 2), ([2, 2], 10)])
def test_shard_batches_stay_within_the_limit_and_lose_nothing(sizes, limit):
    shards = [_shard(f"r{r}", i) for r, n in enumerate(sizes) for i in range(n)]
    batches = drop.shard_batches(shards, limit)
    assert len(batches) <= limit
    assert sorted((s["plan"]["recording_id"], s["shard"]["index"]) for b in batches for s in b) == sorted(
        (s["plan"]["recording_id"], s["shard"]["index"]) for s in shards
    )
    if len(sizes) <= limit:  # a failing batch costs one recording only
        assert all(len({s["plan"]["recording_id"] for s in b}) == 1 for b in batches)
    if sum(sizes) <= limit:  # while the drop fits: one shard per task instance, as before
        assert all(len(b) == 1 for b in batches)


def test_nightly_cap_takes_the_oldest_first_up_to_the_hours(monkeypatch):
    plans = [
        {"uri": "file:///in/c.mp4", "last_modified": "2024-03-03T00:00:00+00:00", "duration_s": 3600.0},
        {"uri": "file:///in/a.mp4", "last_modified": "2024-03-01T00:00:00+00:00", "duration_s": 5400.0},
        {"uri": "file:///in/b.mp4", "last_modified": "2024-03-02T00:00:00+00:00", "duration_s": 3600.0},
    ]
    monkeypatch.setenv("VIGIL_NIGHTLY_MAX_HOURS", "2.5")
    taken, left = drop.within_cap(plans, drop.NightlyCap.from_environment())
    assert taken == {"file:///in/a.mp4", "file:///in/b.mp4"} and [p["uri"] for p in left] == ["file:///in/c.mp4"]
    monkeypatch.setenv("VIGIL_NIGHTLY_ORDER", "newest")
    taken, left = drop.within_cap(plans, drop.NightlyCap.from_environment())
    assert taken == {"file:///in/c.mp4", "file:///in/b.mp4"} and [p["uri"] for p in left] == ["file:///in/a.mp4"]
    monkeypatch.setenv("VIGIL_NIGHTLY_MAX_HOURS", "0.5")  # the first recording always goes, however long
    taken, left = drop.within_cap(plans, drop.NightlyCap.from_environment())
    assert taken == {"file:///in/c.mp4"} and len(left) == 2
    monkeypatch.delenv("VIGIL_NIGHTLY_MAX_HOURS")
    assert drop.within_cap(plans, drop.NightlyCap.from_environment()) == ({p["uri"] for p in plans}, [])


def test_nightly_cap_reads_only_the_recordings_it_may_take_before_planning(monkeypatch):
    """A backlog far larger than the cap is not opened every night: durations are asked in the
    cap's order only until they reach it; the rest is left for later, unread."""
    backlog = [{"uri": f"file:///in/{i:04d}.mp4", "last_modified": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}"}
               for i in range(1000)]  # fmt: skip
    asked = []

    def duration_of(recording: dict) -> float | None:
        asked.append(recording["uri"])
        return None if recording["uri"].endswith("0001.mp4") else 3600.0  # one container states none

    monkeypatch.setenv("VIGIL_NIGHTLY_MAX_HOURS", "2.5")
    taken, left = drop.preselect(list(reversed(backlog)), drop.NightlyCap.from_environment(), duration_of)
    assert [r["uri"] for r in taken] == [r["uri"] for r in backlog[:4]] == asked  # 1 h + ? + 1 h + 1 h
    assert [r["uri"] for r in left] == [r["uri"] for r in backlog[4:]] and {r["duration_s"] for r in left} == {None}
    summary = drop.drop_summary([r["uri"] for r in taken], [], [], left)
    assert summary["counts"]["left for later"] == 996
    drop.log_summary(summary)  # an unread recording's hours are unknown, and said so
    monkeypatch.delenv("VIGIL_NIGHTLY_MAX_HOURS")
    assert drop.preselect(backlog, drop.NightlyCap.from_environment(), duration_of) == (backlog, [])


def test_container_duration_reads_the_index_and_says_when_there_is_none(footage, tmp_path):
    from vigil.config import RunRequest
    from vigil.orchestration.planning import container_duration
    from vigil.store.storage import storage_for
    from vigil.uri import file_uri

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    request = RunRequest(sources=(file_uri(tmp_path / "in"),), out=file_uri(tmp_path / "out"))
    info = storage_for(file_uri(footage)).stat(file_uri(footage))
    assert container_duration(request, info) == pytest.approx(139.4, abs=0.2)
    assert container_duration(request, storage_for(file_uri(junk)).stat(file_uri(junk))) is None


@pytest.mark.parametrize("name, value", [("VIGIL_NIGHTLY_ORDER", "random"), ("VIGIL_NIGHTLY_MAX_HOURS", "ten"),
                                         ("VIGIL_NIGHTLY_MAX_HOURS", "-1")])  # fmt: skip
def test_nightly_cap_refuses_settings_it_cannot_follow(monkeypatch, name, value):
    from vigil.errors import ParameterError

    monkeypatch.setenv(name, value)
    with pytest.raises(ParameterError, match=name):
        drop.NightlyCap.from_environment()


def _summary(run) -> dict:
    from airflow import settings
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    with settings.Session() as session:
        row = session.scalars(select(XComModel).where(
            XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id,
            XComModel.task_id == "finalize", XComModel.key == "summary")).one()  # fmt: skip
        value = XComModel.deserialize_value(row)
    return json.loads(value) if isinstance(value, str) else value


def _task_instances(run) -> dict[str, int]:
    from airflow import settings
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import func, select

    with settings.Session() as session:
        rows = session.execute(select(TaskInstance.task_id, func.count()).where(
            TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id).group_by(TaskInstance.task_id))  # fmt: skip
        return dict(rows.all())


@pytest.mark.slow
def test_a_drop_larger_than_max_map_length_runs_from_one_trigger(airflow_db, tmp_path, footage, monkeypatch):
    """5 recordings x 5 shards = 25 shards with max_map_length 4: one trigger, every recording
    finalized, no step mapped more than 4 times, and a drop summary naming every manifest."""
    from test_end_to_end import _run, _state

    from vigil.store.manifest import read_manifests
    from vigil.store.storage import storage_for
    from vigil.uri import file_uri

    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "4")
    source = tmp_path / "drop"
    source.mkdir()
    for camera in range(5):
        shutil.copy(footage, source / f"cam{camera}.mp4")
    out = file_uri(tmp_path / "out")
    run = _run("vigil_process", {"sources": [file_uri(source)], "out": out, "sample_fps": 0.1, "shard_seconds": 30})
    assert _state(run) == "success"
    instances = _task_instances(run)
    assert instances["plan"] <= 4 and instances["detect"] <= 4, instances
    summary = _summary(run)
    assert summary["counts"] == {"finalized": 5, "failed": 0, "left for later": 0}
    listing = read_manifests(storage_for(out, None), out)
    assert listing.problems == []
    manifests = {m.source.uri: m for _, m in listing.found}
    assert sorted(manifests) == [file_uri(source / f"cam{c}.mp4") for c in range(5)]
    assert all(len(m.shards) == 5 for m in manifests.values())  # 139.4 s in 30-s shards, none dropped
    assert {r["uri"]: r["manifest_uri"].rsplit("/", 1)[-1] for r in summary["recordings"]} == {
        uri: uri_name for uri, uri_name in ((u, f"{m.recording_id}.{m.run_key}.json") for u, m in manifests.items())
    }


@pytest.mark.slow
def test_nightly_takes_its_hours_and_leaves_the_rest_for_later(airflow_db, tmp_path, footage, monkeypatch):
    import os

    from test_end_to_end import _run, _state

    from vigil.uri import file_uri

    source, out = tmp_path / "incoming", tmp_path / "out"
    source.mkdir()
    for age, name in enumerate(("new.mp4", "mid.mp4", "old.mp4")):
        shutil.copy(footage, source / name)
        os.utime(source / name, (1_700_000_000 - age * 86400,) * 2)  # a day apart
    monkeypatch.setenv("VIGIL_NIGHTLY_MAX_HOURS", "0.05")  # 180 s: one 139-s recording a night
    conf = {"sources": [file_uri(source)], "out": file_uri(out), "sample_fps": 0.1, "shard_seconds": 60}
    first = _run("vigil_nightly", conf)
    assert _state(first) == "success"
    rows = {r["uri"].rsplit("/", 1)[-1]: (r["status"], r.get("duration_s")) for r in _summary(first)["recordings"]}
    # old.mp4 and mid.mp4 are planned (139 s is under the cap: the next one might fit), new.mp4
    # is not even read; the probed durations then leave mid.mp4 too.
    assert rows == {"old.mp4": ("finalized", pytest.approx(139.4, abs=0.2)), "mid.mp4": ("left for later", pytest.approx(139.4, abs=0.2)),
                    "new.mp4": ("left for later", None)}  # fmt: skip
    second = _run("vigil_nightly", conf)
    assert _state(second) == "success"
    rows = {r["uri"].rsplit("/", 1)[-1]: r["status"] for r in _summary(second)["recordings"]}
    assert rows == {"mid.mp4": "finalized", "new.mp4": "left for later"}, "the next night takes what was left, not what was done"


def test_gather_names_every_recording_without_shards_and_batches_the_rest(tmp_path, footage):
    """Real plans of real recordings: one planned twice under the same id, one whose plan task
    never answered; the rest batched within the limit, nothing lost."""
    from vigil.config import ProcessParams, RunRequest
    from vigil.orchestration import planning
    from vigil.uri import file_uri

    root, tmp_path = tmp_path, tmp_path / "drop"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copy(footage, tmp_path / folder / "cam.mp4")  # same name and content: one recording
    shutil.copy(footage, tmp_path / "a" / "other.mp4")
    request = RunRequest(sources=(file_uri(tmp_path),), out=file_uri(root / "out"),
                         params=ProcessParams(shard_seconds=30, sample_fps=0.1))  # fmt: skip
    found = planning.discover(request)
    plans = [{"shards": [s.to_dict() for s in planning.plan(info, request)], "failed": []} for info in found]
    recordings = [{"uri": info.uri, "last_modified": info.last_modified} for info in found]
    recordings.append({"uri": file_uri(tmp_path / "lost.mp4"), "last_modified": None})  # its plan task failed
    batches, failed, left = drop.gather(plans, recordings, None, limit=3)
    assert left == [] and batches["cuda"] == []
    assert {f["uri"]: f["error"].split(";")[0] for f in failed} == {
        file_uri(tmp_path / "b" / "cam.mp4"): f"same file name and content as {file_uri(tmp_path / 'a' / 'cam.mp4')}, "
                                               f"analysed as {plans[0]['shards'][0]['plan']['recording_id']}",
        file_uri(tmp_path / "lost.mp4"): "its plan task failed",
    }  # fmt: skip
    assert len(batches["cpu"]) <= 3
    kept = sorted((s["plan"]["source"]["uri"], s["shard"]["index"]) for b in batches["cpu"] for s in b)
    assert kept == [(file_uri(tmp_path / "a" / name), i) for name in ("cam.mp4", "other.mp4") for i in range(5)]
