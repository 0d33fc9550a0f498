"""The CVAT round trip: tracks out as CVAT for video 1.1, corrections back as review decisions."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

FAST = ["--sample-fps", "0.5", "--shard-seconds", "60"]


def _vigil(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vigil.cli", *args], capture_output=True, text=True, env=dict(os.environ))


def _analysis_files(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and not {"reviews", "ledger"} & set(p.parts)}  # fmt: skip


def _json(*args: str):
    done = _vigil(*args, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _track_of(element: ET.Element) -> str:
    return element.find("*/attribute[@name='vigil_track']").text


# ----------------------------------------------------------------------------- the file format alone


def _geometry(frames: dict[int, float]):
    from vigil.review.cvat import TrackGeometry

    track = TrackGeometry()
    for frame, x in frames.items():
        track.skeleton[frame] = tuple((x + i, 10.0 + i, i % 3 != 0) for i in range(17))
        track.boxes[frame] = (x, 5.0, x + 40, 90.0)
    return track


def test_build_then_parse_gives_the_same_tracks_and_no_correction():
    from vigil.review.cvat import VideoMeta, build_xml, parse_xml
    from vigil.review.cvat_sync import compare

    tracks = {4: _geometry({0: 1.0, 20: 2.5}), 9: _geometry({40: 3.25})}
    tracks[4].skeleton[40] = tracks[4].boxes[40] = None  # outside from frame 40
    parsed = parse_xml(build_xml(VideoMeta("cam.mp4", 100, 640, 360), tracks))
    assert parsed.meta == VideoMeta("cam.mp4", 100, 640, 360)
    assert sorted(parsed.tracks) == [4, 9] and parsed.added == [] and parsed.has_boxes
    for number, track in tracks.items():
        assert parsed.tracks[number].skeleton == track.skeleton
        assert parsed.tracks[number].boxes == track.boxes
        assert not compare(track, parsed.tracks[number])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.skeleton.update({0: ((11.0, 10.0, True),) + t.skeleton[0][1:]}), dict(moved_points=0, toggled_points=1)),
        (lambda t: t.skeleton.update({20: ((2.5, 10.0, False), (3.5 + 3, 11.0 + 4, True)) + t.skeleton[20][2:]}),
         dict(moved_points=1, point_shift_px=5.0)),
        (lambda t: t.boxes.update({0: (4.0, 9.0, 44.0, 94.0)}), dict(moved_boxes=1, box_shift_px=5.0)),
        (lambda t: t.skeleton.update({30: t.skeleton[20]}), dict(changed_frames=(30,))),
        (lambda t: t.skeleton.pop(20), dict(changed_frames=(20,))),
    ],
)  # fmt: skip
def test_compare_reports_what_was_changed(edit, expected):
    import copy

    from vigil.review.cvat_sync import compare

    analysis = _geometry({0: 1.0, 20: 2.5})
    found = copy.deepcopy(analysis)
    edit(found)
    correction = compare(analysis, found)
    assert correction
    for name, value in expected.items():
        assert getattr(correction, name) == value, name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><annotations/>', "DTD"),
        (b"<annotations><version>1.1</version><image id='0'/></annotations>", "CVAT for images"),
        (b"<annotations><version>1.0</version></annotations>", "not a CVAT 1.1"),
        (b"<annotations>", "not well-formed"),
    ],
)
def test_parse_refuses_what_is_not_a_cvat_video_file(data, message):
    from vigil.errors import ParameterError
    from vigil.review.cvat import parse_xml

    with pytest.raises(ParameterError, match=message):
        parse_xml(data)


# ----------------------------------------------------------------------------- the round trip


@pytest.fixture(scope="module")
def exported(tmp_path_factory, footage):
    from vigil.uri import file_uri

    base = tmp_path_factory.mktemp("cvat")
    source = base / "source" / "corridor.mp4"
    source.parent.mkdir()
    source.write_bytes(footage.read_bytes())
    out = base / "out"
    done = _vigil("process", file_uri(source), "--out", file_uri(out), *FAST)
    assert done.returncode == 0, done.stderr
    xml = base / "corridor.xml"
    done = _vigil("export-cvat", file_uri(out), "corridor", "--to", str(xml), "--labels", str(base / "labels.json"))
    assert done.returncode == 0, done.stderr
    return source, out, xml


@pytest.fixture
def output(exported, tmp_path):
    """A copy of the analysed output per test, so decisions of one test do not meet another's."""
    _, out, xml = exported
    shutil.copytree(out, tmp_path / "out")
    return tmp_path / "out", xml


@pytest.mark.slow
def test_export_holds_every_track_as_a_skeleton_on_its_video_frames(exported):
    import av

    from vigil.store.schema import COCO_KEYPOINTS
    from vigil.uri import file_uri

    source, out, xml = exported
    root = ET.parse(xml).getroot()
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        width, height = stream.width, stream.height
    task = root.find("meta/task")
    assert (task.findtext("size"), task.findtext("source")) == (str(frames), "corridor.mp4")
    assert (task.findtext("original_size/width"), task.findtext("original_size/height")) == (str(width), str(height))
    labels = {label.findtext("name"): label for label in task.iter("label")}
    assert labels["person"].findtext("type") == "skeleton"
    assert [n for n, label in labels.items() if label.findtext("parent") == "person"] == list(COCO_KEYPOINTS)

    uri = file_uri(out)
    tracks = _json("query", "tracks", uri)
    assert tracks, "the sample footage has people in it"
    skeletons = {_track_of(t): t for t in root.iter("track") if t.get("label") == "person"}
    analysed = [r["frame_index"] for r in _json("query", "sql", "SELECT frame_index FROM frames WHERE status = 'ok'", uri)]
    assert sorted(skeletons) == sorted(str(t["track_id"]) for t in tracks)
    for track in tracks:
        sql = f"SELECT frame_index, kp_x, kp_y, kp_conf FROM detections WHERE track_id = {track['track_id']}"
        rows = _json("query", "sql", sql, uri)
        shapes = {int(s.get("frame")): s for s in skeletons[str(track["track_id"])].iter("skeleton")}
        seen = {f for f, s in shapes.items() if any(p.get("outside") == "0" for p in s.iter("points"))}
        assert seen == {r["frame_index"] for r in rows}, "a keyframe on every frame the person was seen, and only there"
        for frame in seen:  # the next analysed frame shows the person again, or ends the track there
            later = min((f for f in analysed if f > frame), default=None)
            assert later is None or later in seen or all(p.get("outside") == "1" for p in shapes[later].iter("points"))
        for row in rows:
            points = list(shapes[row["frame_index"]].iter("points"))
            assert [p.get("label") for p in points] == list(COCO_KEYPOINTS)
            for point, x, y, conf in zip(points, row["kp_x"], row["kp_y"], row["kp_conf"]):
                assert point.get("points") == f"{x:.2f},{y:.2f}"
                assert point.get("outside") == ("0" if conf >= 0.5 else "1")
    assert json.loads((xml.parent / "labels.json").read_text())[0]["name"] == "person"


@pytest.mark.slow
def test_an_unchanged_file_records_nothing(output):
    from vigil.uri import file_uri

    out, xml = output
    done = _vigil("import-cvat", file_uri(out), "corridor", str(xml), "--reviewer", "analyst-1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert _json("query", "reviews", file_uri(out)) == []


@pytest.mark.slow
def test_corrections_come_back_as_decisions_beside_the_analysis(output, tmp_path):
    from vigil.store.schema import COCO_KEYPOINTS
    from vigil.uri import file_uri

    out, xml = output
    uri = file_uri(out)
    before = _analysis_files(out)
    root = ET.parse(xml).getroot()
    skeletons = [t for t in root.iter("track") if t.get("label") == "person"]
    assert len(skeletons) >= 2, "the round trip needs two tracks to edit"
    deleted, moved = _track_of(skeletons[0]), _track_of(skeletons[1])
    for track in [t for t in root.findall("track") if _track_of(t) == deleted]:
        root.remove(track)
    shape = next(s for s in skeletons[1].iter("skeleton") if s.find("points[@outside='0']") is not None)
    visible = shape.findall("points[@outside='0']")[:3]
    for point in visible:
        x, y = (float(v) for v in point.get("points").split(","))
        point.set("points", f"{x + 6:.2f},{y + 8:.2f}")  # 10 px each
    drawn = ET.fromstring(ET.tostring(skeletons[1]))  # a person the reviewer adds, drawn from scratch
    for attribute in drawn.iter("attribute"):
        if attribute.get("name") == "vigil_track":
            attribute.text = ""
    root.append(drawn)
    edited = tmp_path / "edited.xml"
    ET.ElementTree(root).write(edited, encoding="utf-8", xml_declaration=True)

    done = _vigil("import-cvat", uri, "corridor", str(edited), "--reviewer", "analyst-1")
    assert done.returncode == 0, done.stderr
    records = {r["target_id"]: r for r in json.loads(done.stdout)}
    assert sorted(records) == sorted([int(deleted), int(moved), -1])
    assert records[int(deleted)]["decision"] == "rejected" and "deleted in CVAT" in records[int(deleted)]["note"]
    correction = records[int(moved)]
    assert correction["decision"] == "uncertain"
    assert f"frames {shape.get('frame')})" in correction["note"]
    assert f"{len(visible)} keypoint(s) moved, mean 10.0 px" in correction["note"]
    attachment = out / correction["attachment"]["path"]
    assert correction["attachment"]["path"] in correction["note"]
    assert hashlib.sha256(attachment.read_bytes()).hexdigest() == correction["attachment"]["sha256"]
    corrected = json.loads(attachment.read_text())
    for point in visible:  # the corrected keypoints, where the reviewer put them
        x, y = (float(v) for v in point.get("points").split(","))
        assert corrected["skeleton"][shape.get("frame")][COCO_KEYPOINTS.index(point.get("label"))] == [x, y, True]
    assert records[-1]["decision"] == "uncertain" and "person added in CVAT" in records[-1]["note"]

    listed = _json("query", "reviews", uri)
    assert sorted((r["target_id"], r["decision"], r["current"], r["stale"]) for r in listed) == sorted(
        (t, r["decision"], True, False) for t, r in records.items()
    )
    assert _analysis_files(out) == before, "an import never changes analysis outputs"
    ledgered = {json.loads(p.read_bytes())["manifest"] for p in (out / "ledger").glob("*.json")}
    assert {f"reviews/recording_id={r['recording_id']}/{r['record_id']}.json" for r in records.values()} <= ledgered
    verified = _vigil("verify", uri, "--quiet")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    again = _vigil("import-cvat", uri, "corridor", str(edited), "--reviewer", "analyst-1")
    assert again.returncode == 0 and json.loads(again.stdout) == [], "the same file twice adds nothing"

    attachment.chmod(0o644)
    attachment.write_text(attachment.read_text().replace('"uncertain"', '"x"').replace("0", "1", 1))
    tampered = _vigil("verify", uri)
    assert tampered.returncode == 1 and attachment.name in tampered.stdout


@pytest.mark.slow
def test_the_verdict_attribute_confirms_and_another_video_is_refused(output, tmp_path):
    from vigil.uri import file_uri

    out, xml = output
    uri = file_uri(out)
    root = ET.parse(xml).getroot()
    confirmed = _track_of(root.find("track"))
    for track in [t for t in root.findall("track") if _track_of(t) == confirmed]:
        for attribute in track.iter("attribute"):
            if attribute.get("name") == "verdict":
                attribute.text = "confirmed"
    edited = tmp_path / "verdict.xml"
    ET.ElementTree(root).write(edited, encoding="utf-8", xml_declaration=True)
    done = _vigil("import-cvat", uri, "corridor", str(edited), "--reviewer", "analyst-2")
    assert done.returncode == 0, done.stderr
    assert [(r["target_id"], r["decision"], r["reviewer"]) for r in json.loads(done.stdout)] == [
        (int(confirmed), "confirmed", "analyst-2")
    ]

    root.find("meta/task/size").text = "999"
    ET.ElementTree(root).write(edited, encoding="utf-8", xml_declaration=True)
    refused = _vigil("import-cvat", uri, "corridor", str(edited), "--reviewer", "analyst-2")
    assert refused.returncode == 2 and "frames is 999" in refused.stderr
