"""How the case view scales: a synthetic case of N recordings x H hours, rendered and loaded in
headless Chromium. Prints the page size, the time to build it and the time the page's script
takes to draw every lane (``data-render-ms``).

    .venv/bin/python bench/case_view.py --recordings 100 --hours 10
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import tempfile
import time
from pathlib import Path

from vigil.review.case import case_html

POSTURES = ("lying", "hands_raised", "arms_behind_back", "kneeling_or_crouching", "suspended")


def synthetic_case(recordings: int, hours: float, seed: int = 7) -> dict:
    """Presence every few minutes, an event every ~12 minutes, a gap every ~30 minutes: a busy corridor."""
    rng = random.Random(seed)
    length = hours * 3600
    lanes = []
    for index in range(recordings):
        presence, events, gaps, t = [], [], [], 0.0
        while t < length:
            start, t = t + rng.uniform(30, 240), t + rng.uniform(60, 300)
            presence.append([round(start, 3), round(min(t, length), 3), rng.randint(1, 4)])
        for number in range(1, int(length / 720) + 1):
            at = rng.uniform(0, length - 30)
            events.append([number, rng.choice(POSTURES), rng.randint(1, 400), round(at, 3), round(at + rng.uniform(2, 30), 3),
                           round(rng.random(), 2), None, None])  # fmt: skip
        for _ in range(int(length / 1800)):
            at = rng.uniform(0, length - 60)
            gaps.append([at, at + rng.uniform(1, 60), rng.choice(("no_frame", "undecodable"))])
        lanes.append({"id": f"cam{index:03d}-{index:012x}", "camera": f"cam{index:03d}.mp4",
                      "start": 1709330400000 + rng.uniform(0, 3600) * 1000 if index % 10 else None,
                      "duration": length, "gaps": gaps, "presence": presence, "events": events})  # fmt: skip
    return {"out": "s3://synthetic/case", "lanes": lanes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=int, default=100)
    parser.add_argument("--hours", type=float, default=10)
    parser.add_argument("--thumbnail-kb", type=int, default=25, help="size of each inlined picture (400 at most)")
    args = parser.parse_args()
    began = time.perf_counter()
    data = synthetic_case(args.recordings, args.hours)
    picture = "data:image/jpeg;base64," + "A" * (args.thumbnail_kb * 1365)
    pictures = {}
    for lane in data["lanes"]:
        for event in lane["events"]:
            if len(pictures) < 400:
                pictures[f"{lane['id']}/{event[0]}"] = picture
    page = case_html(data, pictures, None)
    built = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "case.html"
        path.write_text(page)
        began = time.perf_counter()
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={work}/chrome", "--window-size=1600,1000",
             "--virtual-time-budget=20000", "--dump-dom", path.as_uri()],
            capture_output=True, text=True, timeout=300,
        ).stdout  # fmt: skip
        loaded = time.perf_counter() - began
    render = re.search(r'data-render-ms="(\d+)"', dom)
    result = {
        "recordings": args.recordings, "hours": args.hours,
        "intervals": sum(len(lane["presence"]) for lane in data["lanes"]),
        "events": sum(len(lane["events"]) for lane in data["lanes"]),
        "page_mb": round(len(page.encode()) / 1e6, 2), "build_s": round(built, 2),
        "chromium_load_s": round(loaded, 2), "script_render_ms": int(render.group(1)) if render else None,
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
