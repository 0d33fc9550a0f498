"""What investigators read, on real footage: tracks, presence, events, report, wall-clock time."""

from __future__ import annotations

import re

import pytest

from vigil.uri import file_uri

pytestmark = pytest.mark.slow


def _run(source, out, shard_seconds, *extra):
    from vigil.cli import main

    assert main(["process", file_uri(source), "--out", file_uri(out), "--sample-fps", "1",
                 "--shard-seconds", str(shard_seconds), *extra]) == 0  # fmt: skip
    from vigil.review import query

    return query.connect(file_uri(out))


@pytest.fixture(scope="module")
def long_runs(long_recording, tmp_path_factory):
    """The 3-copy recording (418 s: 21 people walk through) as 60-second and as 600-second shards."""
    base = tmp_path_factory.mktemp("review")
    return {seconds: (_run(long_recording, base / f"s{seconds}", seconds), base / f"s{seconds}") for seconds in (60, 600)}


def test_presence_and_tracks_do_not_depend_on_the_shard_length(long_runs):
    short, long = long_runs[60][0], long_runs[600][0]
    for sql in ("SELECT start_s, end_s, max_persons, frames, track_ids FROM presence ORDER BY start_s",
                "SELECT track_id, first_s, last_s, frames FROM tracks ORDER BY track_id",
                "SELECT frame_index, det_index, track_id FROM detections ORDER BY ALL"):  # fmt: skip
        assert short.execute(sql).fetchall() == long.execute(sql).fetchall(), sql


def test_each_person_crossing_is_one_track(long_runs):
    con = long_runs[60][0]
    presence = con.execute("SELECT start_s, end_s, track_ids FROM presence ORDER BY start_s").fetchall()
    assert len(presence) == 18  # 6 crossings in each of the 3 copies
    tracks = {t: (first, last, frames) for t, first, last, frames in
              con.execute("SELECT track_id, first_s, last_s, frames FROM tracks").fetchall()}  # fmt: skip
    crossings_at_shard_boundaries = 0
    for start, end, track_ids in presence:
        # One person, one track: at most a stray track of a frame or two where they leave the view.
        substantial = [t for t in track_ids if tracks[t][2] >= 3]
        assert len(substantial) == 1, f"crossing {start}-{end} is split over tracks {track_ids}"
        first, last, _ = tracks[substantial[0]]
        assert last - first >= 0.6 * (end - start), f"track {substantial[0]} covers too little of {start}-{end}"
        crossings_at_shard_boundaries += any(start < b < end for b in range(60, 420, 60))
    assert crossings_at_shard_boundaries >= 3, "the test must include people walking across shard boundaries"


def test_walking_people_raise_no_lying_or_suspended_events(long_runs):
    con = long_runs[60][0]
    postures = {p for (p,) in con.execute("SELECT DISTINCT posture FROM pose_events").fetchall()}
    assert not postures & {"lying", "suspended"}


def test_derived_tables_and_pictures_are_in_the_manifest_and_verified(long_runs):
    from vigil.store.integrity import verify
    from vigil.store.file_backend import FileStorage

    out = long_runs[60][1]
    report = verify(FileStorage(), file_uri(out))
    assert report.ok, report.problems
    assert any(uri.endswith("timeline.png") for uri in report.checked)
    assert any("/tracks/recording_id=" in uri for uri in report.checked)


def test_report_is_one_offline_page_with_timeline_and_contact_sheet(long_runs, tmp_path):
    from vigil.cli import main

    target = tmp_path / "report.html"
    assert main(["report", "corridor-x3", file_uri(long_runs[60][1]), "--html", str(target), "--blur-faces"]) == 0
    page = target.read_text()
    assert "<h2>Timeline</h2>" in page and "People (tracks): best view of each" in page
    assert page.count("data:image/png;base64,") == 1 and page.count("data:image/jpeg;base64,") >= 1
    assert not re.search(r"""(src|href)=["']https?://""", page), "nothing is fetched from the network"
    assert "blurred in these pictures" in page


def test_wall_clock_start_fills_captured_at_and_answers_wall_clock_windows(footage, tmp_path):
    from vigil.review import query

    con = _run(footage, tmp_path / "out", 600, "--recording-start", "2024-03-01T22:00:00+02:00")
    first = con.execute("SELECT min(captured_at) FROM frames").fetchone()[0]
    assert first.isoformat() == "2024-03-01T20:00:00+00:00"
    window = query.Window("one-by-one-person-detection", query.parse_time("2024-03-01T20:00:30Z"),
                          query.parse_time("2024-03-01T20:01:00Z"))  # fmt: skip
    frames = query.frames(con, window).rows
    assert [row[3] for row in frames] == [float(s) for s in range(30, 60)]
    assert all(row[4] is not None for row in query.presence(con).rows)


def test_wall_clock_start_from_the_file_name(footage, tmp_path, monkeypatch):
    from vigil.orchestration.planning import start_from_name

    monkeypatch.setenv("VIGIL_FILENAME_START", r"(?P<Y>\d{4})(?P<m>\d{2})(?P<d>\d{2})_(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})")
    monkeypatch.setenv("VIGIL_FILENAME_TZ", "+03:00")
    assert start_from_name("s3://b/cam3_20240301_221500.mp4") == "2024-03-01T19:15:00+00:00"
    assert start_from_name("s3://b/cam3.mp4") is None
