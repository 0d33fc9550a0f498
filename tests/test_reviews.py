"""Review decisions live beside the analysis: append-only, superseding, never changing outputs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
FAST = ["--sample-fps", "0.5", "--shard-seconds", "60"]


def _vigil(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vigil.cli", *args], capture_output=True, text=True, env=dict(os.environ))


def _analysis_files(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and not {"reviews", "ledger"} & set(p.parts)}  # fmt: skip


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, footage):
    from vigil.uri import file_uri

    base = tmp_path_factory.mktemp("reviews")
    source = base / "source" / "corridor.mp4"
    source.parent.mkdir()
    source.write_bytes(footage.read_bytes())
    out = base / "out"
    done = _vigil("process", file_uri(source), "--out", file_uri(out), *FAST)
    assert done.returncode == 0, done.stderr
    return source, out


def _json(*args: str):
    done = _vigil(*args, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_decisions_supersede_keep_history_and_never_touch_the_analysis(analysed):
    from vigil.uri import file_uri

    source, out = analysed
    uri = file_uri(out)
    before = _analysis_files(out)
    tracks = _json("query", "tracks", uri)
    assert tracks, "the sample footage has people in it"
    track = tracks[0]["track_id"]
    first = _vigil("review", uri, "corridor", "--track", str(track), "--decision", "uncertain", "--note", "face hidden",
                   "--reviewer", "analyst-1")  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = _vigil("review", uri, "corridor", "--track", str(track), "--decision", "confirmed", "--reviewer", "analyst-2")
    assert second.returncode == 0, second.stderr
    history = _json("query", "reviews", uri)
    assert [(r["decision"], r["reviewer"], r["current"], r["stale"]) for r in history] == [
        ("uncertain", "analyst-1", False, False), ("confirmed", "analyst-2", True, False)
    ]
    assert history[0]["note"] == "face hidden"
    assert _analysis_files(out) == before, "decisions never change analysis outputs"
    page = out.parent / "report.html"
    assert _vigil("report", "corridor", uri, "--html", str(page)).returncode == 0
    assert "confirmed (analyst-2)" in page.read_text() and "uncertain (analyst-1)" not in page.read_text()
    verified = _vigil("verify", uri)
    assert verified.returncode == 0 and "UNAUTHENTICATED" in verified.stderr  # no key configured: unsigned, as manifests
    ledgered = [json.loads(p.read_bytes())["manifest"] for p in sorted((out / "ledger").glob("*.json"))]
    assert [p.split("/")[0] for p in ledgered[-2:]] == ["reviews", "reviews"], "each decision is in the ledger"
    # A re-run with force re-publishes the analysis; the decisions survive and still match their rows.
    rerun = _vigil("process", file_uri(source), "--out", uri, *FAST, "--force")
    assert rerun.returncode == 0, rerun.stderr
    assert [(r["decision"], r["stale"]) for r in _json("query", "reviews", uri, "--current")] == [("confirmed", False)]
    assert _vigil("verify", uri).returncode == 0


def test_events_can_be_filtered_by_their_current_decision():
    """Over real pose_events rows (the schema's own table), numbered per recording by time."""
    import duckdb
    import pyarrow as pa

    from vigil.review import query
    from vigil.review.decisions import register, rows_sha256, target_rows
    from vigil.store.schema import POSE_EVENTS, SCHEMAS

    schema = SCHEMAS[POSE_EVENTS]
    rows = [{"recording_id": "cam-1", "track_id": t, "posture": p, "start_s": s, "end_s": s + 5, "frames": 3, "score": 0.8,
             "rule_version": "postures-1", "best_frame_index": 1, "best_pts_s": s, "best_det_index": 0}
            for t, p, s in ((2, "lying", 30.0), (1, "hands_raised", 10.0), (1, "lying", 50.0))]  # fmt: skip
    con = duckdb.connect()
    con.register("pose_events", pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema))
    decided = [("rejected", 2, "t1"), ("confirmed", 3, "t2"), ("uncertain", 3, "t3")]
    register(con, [{"recording_id": "cam-1", "target": "event", "target_id": n, "decision": d, "note": "", "reviewer": "a",
                    "decided_at": at, "record_id": at, "rows_sha256": rows_sha256(target_rows(con, "cam-1", "event", n))}
                   for d, n, at in decided])  # fmt: skip
    listed = query.events(con)
    assert [(r[1], r[3], r[-1]) for r in listed.rows] == [(1, "hands_raised", None), (2, "lying", "rejected"), (3, "lying", "uncertain")]
    assert [r[1] for r in query.events(con, reviewed="rejected").rows] == [2]
    assert [r[1] for r in query.events(con, reviewed="none").rows] == [1]
    assert [r[1] for r in query.events(con, reviewed="confirmed").rows] == [], "superseded by 'uncertain'"


def test_a_decision_on_nothing_or_an_altered_record_is_refused(analysed, tmp_path):
    import shutil

    from vigil.uri import file_uri

    _, out = analysed
    done = _vigil("review", file_uri(out), "corridor", "--track", "9999", "--decision", "confirmed", "--reviewer", "a")
    assert done.returncode == 2 and "no track 9999" in done.stderr
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    record = next((copy / "reviews").rglob("*.json"))
    record.write_text(record.read_text().replace('"confirmed"', '"rejected"').replace('"uncertain"', '"rejected"'))
    done = _vigil("verify", file_uri(copy))
    assert done.returncode == 1 and record.name in done.stdout
    done = _vigil("query", "reviews", file_uri(copy))
    assert done.returncode == 2 and record.name in done.stderr  # an error naming it, not another answer
