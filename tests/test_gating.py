"""Static-scene gating (off by default): honest accounting of the frames it skips."""

from __future__ import annotations

import pytest

from vigil.uri import file_uri

pytestmark = pytest.mark.slow


def test_gating_never_marks_a_frame_ok_that_was_not_analysed(footage, tmp_path, monkeypatch):
    from vigil.review import query
    from vigil.cli import main
    from vigil.model.detector import PoseDetector

    seen = []
    original = PoseDetector.detect
    monkeypatch.setattr(PoseDetector, "detect", lambda self, images: seen.extend(images) or original(self, images))
    out = file_uri(tmp_path / "out")
    assert main(["process", file_uri(footage), "--out", out, "--sample-fps", "1", "--static-gate", "1"]) == 0
    con = query.connect(out)
    rows = con.execute("SELECT frame_index, persons, status, inherits_from FROM frames ORDER BY pts_s").fetchall()
    ok = {index: persons for index, persons, status, _ in rows if status == "ok"}
    static = [(index, persons, ref) for index, persons, status, ref in rows if status == "static"]
    assert len(ok) == len(seen), "every 'ok' frame went through the model, and only those"
    assert static and len(ok) + len(static) == 140
    for index, persons, reference in static:
        assert reference < index and ok[reference] == persons, "a static frame inherits an earlier analysed frame"
    inherited_rows = con.execute(
        "SELECT count(*) FROM detections d JOIN frames f USING (recording_id, frame_index) WHERE f.status = 'static'"
    ).fetchone()[0]
    assert inherited_rows == 0, "no detection rows are invented for frames that were not analysed"


def test_gating_is_off_by_default():
    from vigil.config import ProcessParams

    assert ProcessParams().static_gate is None
