"""The case view: every recording on one timeline, offline, events with picture and clip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
FAST = ["--sample-fps", "2", "--shard-seconds", "60"]
CHROMIUM = shutil.which("chromium")


def _vigil(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vigil.cli", *args], capture_output=True, text=True, env=dict(os.environ))


def sideways(source: Path, target: Path, frames: int = 400) -> Path:
    """The footage turned 90° in its pixels (a camera mounted on its side, no rotation flag): people
    walking look like people lying, which gives the page a posture event to show."""
    import av
    import numpy as np

    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 240, 432, "yuv420p"
        stream.options = {"g": "25", "preset": "veryfast"}
        for number, frame in enumerate(inp.decode(video=0)):
            if number >= frames:
                break
            image = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24")))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24").reformat(width=240, height=432)))
        out.mux(stream.encode())
    return target


@pytest.fixture(scope="module")
def case(tmp_path_factory, footage):
    from vigil.uri import file_uri

    base = tmp_path_factory.mktemp("case")
    (base / "source").mkdir()
    corridor = base / "source" / "corridor.mp4"
    corridor.write_bytes(footage.read_bytes())
    turned = sideways(footage, base / "source" / "sideways.mp4")
    out = file_uri(base / "out")
    done = _vigil("process", file_uri(corridor), "--out", out, *FAST, "--recording-start", "2024-03-01T22:00:00Z")
    assert done.returncode == 0, done.stderr
    done = _vigil("process", file_uri(turned), "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    page = base / "case.html"
    done = _vigil("case", out, "--html", str(page), "--make-clips")
    assert done.returncode == 0, done.stderr
    return base, page


def _data(page: Path) -> dict:
    block = re.search(r'<script type="application/json" id=case-data>(.*?)</script>', page.read_text(), re.S)
    return json.loads(block.group(1))


def test_every_recording_gets_a_lane_and_unknown_starts_their_own_axis(case):
    _, page = case
    lanes = {lane["camera"]: lane for lane in _data(page)["lanes"]}
    assert set(lanes) == {"corridor.mp4", "sideways.mp4"}
    assert lanes["corridor.mp4"]["start"] == 1709330400000 and lanes["sideways.mp4"]["start"] is None
    assert lanes["corridor.mp4"]["presence"] and lanes["sideways.mp4"]["events"]
    data = _data(page)
    event = lanes["sideways.mp4"]["events"][0]
    ranked = data["similar"][f"{lanes['sideways.mp4']['id']}/{event[2]}"]
    assert ranked and {r[0] for r in ranked} <= {lane["id"] for lane in lanes.values()}


def test_events_carry_their_picture_and_a_clip_that_verifies(case):
    from vigil.uri import file_uri

    base, page = case
    data = _data(page)
    lane = next(lane for lane in data["lanes"] if lane["events"])
    event = lane["events"][0]
    assert data["pictures"][f"{lane['id']}/{event[0]}"].startswith("data:image/jpeg;base64,")
    path, sha256 = event[-1]
    assert (base / "out" / path).is_file() and data["clipBase"] == "out"
    assert _vigil("verify", file_uri(base / "out")).returncode == 0


def test_the_page_is_offline_and_no_value_can_break_out_of_its_data():
    from vigil.review.case import case_html

    hostile = "</script><script>alert(1)</script>"
    page = case_html({"out": hostile, "lanes": [{"id": "x", "camera": hostile, "start": None, "duration": 1.0, "gaps": [],
                                                  "presence": [], "events": []}]}, {}, None)  # fmt: skip
    assert "<script>alert(1)" not in page
    assert "script-src 'sha256-" in page and "default-src 'none'" in page
    assert not re.search(r"(src|href)=\"?https?:", page), "nothing is fetched from a network"


@pytest.mark.skipif(not CHROMIUM, reason="headless Chromium is not installed (bash .ci/run installs it)")
def test_clicking_an_event_shows_its_picture_and_clip_in_chromium(case, tmp_path):
    _, page = case
    lane = next(lane for lane in _data(page)["lanes"] if lane["events"])
    url = f"{page.as_uri()}#event={lane['id']}/1"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1400,900"]  # fmt: skip
    dom = subprocess.run([*args, "--virtual-time-budget=5000", "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "<title>ready: " in dom, "the page's script ran under its CSP"
    assert re.search(r'<img alt="lying" src="data:image/jpeg', dom) and "<video controls" in dom
    assert 'id="find-person"' in dom, "a track with an appearance descriptor offers 'find this person'"
    shot = tmp_path / "case.png"
    subprocess.run([*args, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000
