"""``make demo``: a long recording from the sample footage, processed by Airflow itself, then queried.

Everything is embedded: file:// storage under ``.demo/``, Airflow on SQLite in ``.demo/airflow``
(``airflow dags test`` runs the DAG in one process: no scheduler, no services).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vigil.orchestration.demo", description=__doc__)
    parser.add_argument("--footage", type=Path, required=True, help="the short sample recording")
    parser.add_argument("--dags", type=Path, required=True, help="the project's dags/ folder")
    parser.add_argument("--workdir", type=Path, default=Path(".demo"))
    parser.add_argument("--copies", type=int, default=9, help="9 copies of 139.4 s = 20.9 minutes")
    parser.add_argument("--sample-fps", type=float, default=2.0)
    parser.add_argument("--shard-seconds", type=int, default=300)
    args = parser.parse_args(argv)

    from vigil.media.remux import concat_copies
    from vigil.uri import file_uri

    work = args.workdir.resolve()
    source_dir, out_dir, home = work / "source", work / "output", work / "airflow"
    recording = source_dir / "corridor-cam1.mp4"
    if not recording.exists():
        concat_copies(args.footage, recording, args.copies)
    print(f"recording: {recording} ({recording.stat().st_size / 1e6:.1f} MB, {args.copies} × the sample footage)")

    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(args.dags.resolve()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "False",
    }
    home.mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).with_name("airflow"))
    _run([airflow, "db", "migrate"], env, home / "db-migrate.log")
    conf = {
        "sources": [file_uri(source_dir) + "/"],
        "out": file_uri(out_dir),
        "sample_fps": args.sample_fps,
        "shard_seconds": args.shard_seconds,
    }
    print(f"airflow dags test vigil_process -c '{json.dumps(conf)}'  (log: {home / 'dags-test.log'})")
    began = time.monotonic()
    _run([airflow, "dags", "test", "vigil_process", "-c", json.dumps(conf)], env, home / "dags-test.log")
    elapsed = time.monotonic() - began

    from vigil.review import query

    con = query.connect(conf["out"])
    frames = con.execute("SELECT count(*) FROM frames").fetchone()[0]
    print(f"\nvigil_process: {frames} sampled frames in {elapsed:.0f} s through Airflow "
          f"({frames / elapsed:.1f} sampled frames/s, including start-up)\n")  # fmt: skip
    print(query.format_result(query.run_sql(con, "SELECT * FROM recordings")))
    print("\nWhen were people there? (vigil query presence)")
    presence = query.presence(con)
    print(query.format_result(query.Result(presence.columns, presence.rows[:8])))
    print(f"… {len(presence.rows)} intervals in all\n\nHow many per minute? (vigil query counts)")
    per_minute = query.counts(con)
    print(query.format_result(query.Result(per_minute.columns, per_minute.rows[:5])))
    reports = [m.artifacts["report.html"]["path"] for m in query.manifests(conf["out"]) if "report.html" in m.artifacts]
    if reports:  # the manifest says where its run's report is (the layout module decides the path)
        print(f"\nReport to open in a browser: {out_dir / reports[0]}")
    vigil = _command_path(Path(sys.executable).with_name("vigil"))  # works as printed, venv activated or not
    print(f"\nTry: {vigil} query presence {conf['out']}\n     {vigil} query detections {conf['out']} --from 00:10:00 --to 00:10:05"
          f"\n     {vigil} verify {conf['out']}\n(or `source .venv/bin/activate` once, then plain `vigil …`)")  # fmt: skip
    return 0


def _command_path(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (``.venv/bin/vigil``)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _run(command: list[str], env: dict, log: Path) -> None:
    with open(log, "w") as handle:
        done = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text().splitlines()[-30:]
        raise SystemExit(f"{' '.join(command[:3])} failed (exit {done.returncode}); last lines of {log}:\n" + "\n".join(tail))


if __name__ == "__main__":
    sys.exit(main())
