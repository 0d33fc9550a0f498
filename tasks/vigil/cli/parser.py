"""The ``vigil`` command line: every command, its flags, and the handler in ``commands`` it calls.
Processing flags are generated from the declared parameters (``vigil.config``), never written here."""

from __future__ import annotations

import argparse

from vigil.cli.commands import (
    run_case, run_clip, run_concat, run_export, run_export_cvat, run_import_cvat, run_process, run_query,
    run_report, run_review, run_stamp, run_verify,
)  # fmt: skip
from vigil.cli.params import add_processing_flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description="Turn surveillance recordings into searchable evidence.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    process = commands.add_parser("process", help="analyse recordings without Airflow (same task code)")
    process.add_argument("sources", nargs="+", metavar="SOURCE_URI", help="recording URI(s) or prefix(es)")
    process.add_argument("--out", required=True, metavar="OUTPUT_URI")
    add_processing_flags(process)
    process.add_argument("--recording-start", default=None, help="ISO 8601 wall-clock time of the first frame")
    process.add_argument("--conn-id", default=None, help="Airflow connection id for s3:// (else AWS environment)")
    process.add_argument(
        "--expected-sha256", action="append", default=[], metavar="[URI=]HEX",
        help="refuse a recording whose SHA-256 differs (plain HEX when there is one source)",
    )  # fmt: skip
    process.add_argument("--force", action="store_true",
                         help="re-analyse, writing new output keys beside (never over) earlier runs' files")  # fmt: skip
    process.add_argument("--blur-faces", action="store_true", help="blur faces in review pictures (not in data)")
    process.add_argument("--clips", action="store_true", help="cut a clip for every presence interval and event")
    process.set_defaults(func=run_process)

    query = commands.add_parser("query", help="ask the analyst questions of an output location")
    kinds = query.add_subparsers(required=True, metavar="QUERY")
    for name, help_text in (
        ("presence", "when people were present (intervals, head count, tracks)"),
        ("tracks", "the people (tracks): first/last seen, best view"),
        ("events", "posture events: lying, hands raised, arms behind back, kneeling, suspended"),
        ("frames", "sampled frames: analysed or not, persons in each"),
        ("counts", "people per time bucket (default: per minute)"),
        ("detections", "every detection in a time window"),
        ("recordings", "the recordings an output holds"),
        ("reviews", "review decisions on tracks and events, with their history"),
        ("sql", "raw SQL over views detections, frames, tracks, presence, pose_events, track_points, recordings"),
    ):
        sub = kinds.add_parser(name, help=help_text)
        if name == "sql":
            sub.add_argument("sql")
        sub.add_argument("out", metavar="OUTPUT_URI")
        if name not in ("sql", "recordings", "reviews"):
            sub.add_argument("--recording", help="recording id (or its file-stem prefix)")
            sub.add_argument("--from", dest="start", help="HH:MM:SS, seconds, or ISO 8601 wall clock (e.g. 2024-03-01T22:10:00Z)")
            sub.add_argument("--to", dest="end", help="end of the window (exclusive), same forms")
        if name in ("presence", "tracks", "events"):
            sub.add_argument("--min-duration", type=float, default=0.0, help="seconds")
        if name in ("presence", "frames"):
            sub.add_argument("--min-persons", type=int, default=1 if name == "presence" else 0)
        if name in ("tracks", "detections"):
            sub.add_argument("--min-conf", type=float, default=0.0)
        if name == "events":
            from vigil.analysis.postures import POSTURES

            sub.add_argument("--posture", choices=POSTURES)
            sub.add_argument("--min-score", type=float, default=0.0)
            sub.add_argument("--reviewed", choices=("confirmed", "rejected", "uncertain", "none"),
                             help="only events whose current review decision is this (none: not reviewed)")  # fmt: skip
        if name == "reviews":
            sub.add_argument("--recording", help="recording id (or its file-stem prefix)")
            sub.add_argument("--current", action="store_true", help="only decisions not superseded")
        if name == "frames":
            sub.add_argument("--status", choices=("ok", "undecodable", "no_frame"))
        if name == "counts":
            sub.add_argument("--bucket", type=float, default=60.0, help="bucket length in seconds")
        sub.add_argument("--format", choices=("table", "csv", "json"), default="table")
        sub.add_argument("--conn-id", default=None)
        sub.set_defaults(func=run_query, kind=name)

    similar = kinds.add_parser("similar", help="tracks that look like one track, in every recording (a lead, not an identification)")
    similar.add_argument("out", metavar="OUTPUT_URI")
    similar.add_argument("recording", help="recording id (or its file-stem prefix)")
    similar.add_argument("--track", type=int, required=True, help="track id (vigil query tracks)")
    similar.add_argument("--top", type=int, default=10, help="how many to list (default 10)")
    similar.add_argument("--format", choices=("table", "csv", "json"), default="table")
    similar.add_argument("--conn-id", default=None)
    similar.set_defaults(func=run_query, kind="similar")

    report = commands.add_parser("report", help="write one self-contained HTML page for a recording")
    report.add_argument("recording", help="recording id (or its file-stem prefix)")
    report.add_argument("out", metavar="OUTPUT_URI")
    report.add_argument("--html", default=None, help="file to write (default: <recording id>.html)")
    report.add_argument("--blur-faces", action="store_true", help="blur faces in every picture")
    report.add_argument("--conn-id", default=None)
    report.set_defaults(func=run_report)

    verify = commands.add_parser("verify", help="re-hash every output file against its manifest")
    verify.add_argument("out", metavar="OUTPUT_URI")
    verify.add_argument("--conn-id", default=None)
    verify.add_argument("--quiet", action="store_true", help="print problems only")
    verify.add_argument("--trust", action="append", default=[], metavar="PUBKEY.pem",
                        help="a trusted signing key (repeatable); with it, unsigned or untrusted manifests fail")  # fmt: skip
    verify.add_argument("--keyring", action="append", default=[], metavar="FILE", help="a file of trusted PEM public keys")
    verify.add_argument("--tsa-roots", action="append", default=[], metavar="PEM",
                        help="CA certificates timestamp tokens must chain to (default: $VIGIL_TSA_ROOTS)")  # fmt: skip
    verify.add_argument("--head", default=None, metavar="SEQ:SHA256",
                        help="a ledger head recorded elsewhere (the Airflow asset event): fails if the ledger lost it")  # fmt: skip
    verify.set_defaults(func=run_verify)

    review = commands.add_parser("review", help="record a review decision on a track or a posture event")
    review.add_argument("out", metavar="OUTPUT_URI")
    review.add_argument("recording", help="recording id (or its file-stem prefix)")
    target = review.add_mutually_exclusive_group(required=True)
    target.add_argument("--track", type=int, help="track id (vigil query tracks)")
    target.add_argument("--event", type=int, help="event number (the event column of vigil query events)")
    review.add_argument("--decision", required=True, choices=("confirmed", "rejected", "uncertain"))
    review.add_argument("--note", default="", help="free text, kept with the decision")
    review.add_argument("--reviewer", default=None, help="who decides (default: the login name)")
    review.add_argument("--conn-id", default=None)
    review.set_defaults(func=run_review)

    case = commands.add_parser("case", help="one page with every recording on a wall-clock timeline")
    case.add_argument("out", metavar="OUTPUT_URI")
    case.add_argument("--html", default="case.html", help="file to write (default: case.html)")
    case.add_argument("--make-clips", action="store_true", help="cut a clip for every event that has none first")
    case.add_argument("--pad", type=float, default=2.0, help="seconds around each event with --make-clips")
    case.add_argument("--conn-id", default=None)
    case.add_argument("--source-conn-id", default=None, help="Airflow connection id for s3:// sources (--make-clips)")
    case.set_defaults(func=run_case)

    clip = commands.add_parser("clip", help="cut a lossless evidence clip (stream copy) with a sealed record")
    clip.add_argument("out", metavar="OUTPUT_URI")
    clip.add_argument("recording", help="recording id (or its unique prefix)")
    clip.add_argument("--from", dest="start", required=True, help="recording time: HH:MM:SS[.fff], MM:SS or seconds")
    clip.add_argument("--to", dest="end", required=True, help="recording time: HH:MM:SS[.fff], MM:SS or seconds")
    clip.add_argument("--pad", type=float, default=0.0, metavar="SECONDS", help="extra seconds on both sides")
    clip.add_argument("--conn-id", default=None, help="Airflow connection id for an s3:// output")
    clip.add_argument("--source-conn-id", default=None, help="Airflow connection id for an s3:// source")
    clip.set_defaults(func=run_clip)

    export_cvat = commands.add_parser("export-cvat", help="write a recording's tracks as CVAT for video 1.1 XML")
    export_cvat.add_argument("out", metavar="OUTPUT_URI")
    export_cvat.add_argument("recording", help="recording id (or its file-stem prefix)")
    export_cvat.add_argument("--to", required=True, metavar="FILE.xml", help="file to write")
    export_cvat.add_argument("--no-boxes", action="store_true", help="skeleton tracks only, no person_box tracks")
    export_cvat.add_argument("--labels", default=None, metavar="FILE.json",
                             help="also write the labels for CVAT's label constructor (Raw), to create the task with")  # fmt: skip
    export_cvat.add_argument("--conn-id", default=None)
    export_cvat.set_defaults(func=run_export_cvat)

    import_cvat = commands.add_parser("import-cvat", help="read corrections made in CVAT back as review decisions")
    import_cvat.add_argument("out", metavar="OUTPUT_URI")
    import_cvat.add_argument("recording", help="recording id (or its file-stem prefix)")
    import_cvat.add_argument("file", metavar="FILE.xml", help="the task exported from CVAT as 'CVAT for video 1.1'")
    import_cvat.add_argument("--reviewer", required=True, help="who made the corrections")
    import_cvat.add_argument("--conn-id", default=None)
    import_cvat.set_defaults(func=run_import_cvat)

    stamp = commands.add_parser("stamp", help="get the RFC 3161 timestamps still missing ($VIGIL_TSA_URLS)")
    stamp.add_argument("out", metavar="OUTPUT_URI")
    stamp.add_argument("--retries", type=int, default=3)
    stamp.add_argument("--conn-id", default=None)
    stamp.set_defaults(func=run_stamp)

    export = commands.add_parser("export", help="write a self-verifying evidence package (see its VERIFY.txt)")
    export.add_argument("out", metavar="OUTPUT_URI")
    export.add_argument("--to", required=True, metavar="DIR|URI", help="a new folder, file:// or s3:// location")
    export.add_argument("--recording", action="append", default=[], metavar="ID", help="only these (repeatable)")
    export.add_argument("--conn-id", default=None)
    export.set_defaults(func=run_export)

    concat = commands.add_parser("concat", help="build a long recording from copies of a short one (no re-encode)")
    concat.add_argument("source")
    concat.add_argument("target")
    concat.add_argument("--copies", type=int, required=True)
    concat.set_defaults(func=run_concat)
    return parser
