"""The ``vigil`` command: thin wrappers around pipeline and query, for laptops and debugging."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from vigil.errors import VigilError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except VigilError as exc:
        print(f"vigil: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=__doc__)
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
    process.set_defaults(func=_process)

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
        sub.set_defaults(func=_query, kind=name)

    similar = kinds.add_parser("similar", help="tracks that look like one track, in every recording (a lead, not an identification)")
    similar.add_argument("out", metavar="OUTPUT_URI")
    similar.add_argument("recording", help="recording id (or its file-stem prefix)")
    similar.add_argument("--track", type=int, required=True, help="track id (vigil query tracks)")
    similar.add_argument("--top", type=int, default=10, help="how many to list (default 10)")
    similar.add_argument("--format", choices=("table", "csv", "json"), default="table")
    similar.add_argument("--conn-id", default=None)
    similar.set_defaults(func=_query, kind="similar")

    report = commands.add_parser("report", help="write one self-contained HTML page for a recording")
    report.add_argument("recording", help="recording id (or its file-stem prefix)")
    report.add_argument("out", metavar="OUTPUT_URI")
    report.add_argument("--html", default=None, help="file to write (default: <recording id>.html)")
    report.add_argument("--blur-faces", action="store_true", help="blur faces in every picture")
    report.add_argument("--conn-id", default=None)
    report.set_defaults(func=_report)

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
    verify.set_defaults(func=_verify)

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
    review.set_defaults(func=_review)

    case = commands.add_parser("case", help="one page with every recording on a wall-clock timeline")
    case.add_argument("out", metavar="OUTPUT_URI")
    case.add_argument("--html", default="case.html", help="file to write (default: case.html)")
    case.add_argument("--make-clips", action="store_true", help="cut a clip for every event that has none first")
    case.add_argument("--pad", type=float, default=2.0, help="seconds around each event with --make-clips")
    case.add_argument("--conn-id", default=None)
    case.add_argument("--source-conn-id", default=None, help="Airflow connection id for s3:// sources (--make-clips)")
    case.set_defaults(func=_case)

    clip = commands.add_parser("clip", help="cut a lossless evidence clip (stream copy) with a sealed record")
    clip.add_argument("out", metavar="OUTPUT_URI")
    clip.add_argument("recording", help="recording id (or its unique prefix)")
    clip.add_argument("--from", dest="start", required=True, help="recording time: HH:MM:SS[.fff], MM:SS or seconds")
    clip.add_argument("--to", dest="end", required=True, help="recording time: HH:MM:SS[.fff], MM:SS or seconds")
    clip.add_argument("--pad", type=float, default=0.0, metavar="SECONDS", help="extra seconds on both sides")
    clip.add_argument("--conn-id", default=None, help="Airflow connection id for an s3:// output")
    clip.add_argument("--source-conn-id", default=None, help="Airflow connection id for an s3:// source")
    clip.set_defaults(func=_clip)

    export_cvat = commands.add_parser("export-cvat", help="write a recording's tracks as CVAT for video 1.1 XML")
    export_cvat.add_argument("out", metavar="OUTPUT_URI")
    export_cvat.add_argument("recording", help="recording id (or its file-stem prefix)")
    export_cvat.add_argument("--to", required=True, metavar="FILE.xml", help="file to write")
    export_cvat.add_argument("--no-boxes", action="store_true", help="skeleton tracks only, no person_box tracks")
    export_cvat.add_argument("--labels", default=None, metavar="FILE.json",
                             help="also write the labels for CVAT's label constructor (Raw), to create the task with")  # fmt: skip
    export_cvat.add_argument("--conn-id", default=None)
    export_cvat.set_defaults(func=_export_cvat)

    import_cvat = commands.add_parser("import-cvat", help="read corrections made in CVAT back as review decisions")
    import_cvat.add_argument("out", metavar="OUTPUT_URI")
    import_cvat.add_argument("recording", help="recording id (or its file-stem prefix)")
    import_cvat.add_argument("file", metavar="FILE.xml", help="the task exported from CVAT as 'CVAT for video 1.1'")
    import_cvat.add_argument("--reviewer", required=True, help="who made the corrections")
    import_cvat.add_argument("--conn-id", default=None)
    import_cvat.set_defaults(func=_import_cvat)

    stamp = commands.add_parser("stamp", help="get the RFC 3161 timestamps still missing ($VIGIL_TSA_URLS)")
    stamp.add_argument("out", metavar="OUTPUT_URI")
    stamp.add_argument("--retries", type=int, default=3)
    stamp.add_argument("--conn-id", default=None)
    stamp.set_defaults(func=_stamp)

    export = commands.add_parser("export", help="write a self-verifying evidence package (see its VERIFY.txt)")
    export.add_argument("out", metavar="OUTPUT_URI")
    export.add_argument("--to", required=True, metavar="DIR|URI", help="a new folder, file:// or s3:// location")
    export.add_argument("--recording", action="append", default=[], metavar="ID", help="only these (repeatable)")
    export.add_argument("--conn-id", default=None)
    export.set_defaults(func=_export)

    concat = commands.add_parser("concat", help="build a long recording from copies of a short one (no re-encode)")
    concat.add_argument("source")
    concat.add_argument("target")
    concat.add_argument("--copies", type=int, required=True)
    concat.set_defaults(func=_concat)
    return parser


def add_processing_flags(parser: argparse.ArgumentParser, cls=None) -> None:
    """One ``--flag`` per declared processing parameter, from its declaration (type, default,
    choices, help); the bounds are checked by the parameters themselves."""
    from vigil.config import ProcessParams, declarations, describe

    for d in declarations(cls or ProcessParams):
        meta = d.meta
        limits = "" if meta["choices"] or meta["minimum"] is None else f" ({describe(meta)})"
        default = "" if meta["choices"] else f"; default {d.default}"
        parser.add_argument(f"--{d.name.replace('_', '-')}", dest=d.name, type=d.kind, default=d.default,
                            choices=meta["choices"], help=f"{meta['help']}{limits}{default}")  # fmt: skip


def params_from_args(args, cls=None):
    """The processing parameters of parsed CLI arguments."""
    from vigil.config import ProcessParams, declarations

    cls = cls or ProcessParams
    return cls(**{d.name: getattr(args, d.name) for d in declarations(cls)})


def _process(args) -> int:
    from vigil.config import RunRequest
    from vigil.errors import RecordingsFailed
    from vigil.errors import InputError
    from vigil.orchestration import pipeline
    from vigil.orchestration.finalize import finalize
    from vigil.orchestration.progress import ShardProgress

    request = RunRequest(
        sources=tuple(args.sources),
        out=args.out,
        params=params_from_args(args),
        source_conn_id=args.conn_id,
        out_conn_id=args.conn_id,
        recording_start=args.recording_start,
        expected_sha256=_expected_hashes(args.expected_sha256, args.sources),
        force=args.force,
        blur_faces=args.blur_faces,
        clips=args.clips,
    )
    began = time.monotonic()
    planned = pipeline.plan_all(request, pipeline.discover(request))
    if not planned["shards"] and not planned["failed"]:
        raise InputError(f"nothing analysed: no recording found in {', '.join(request.sources)}")  # never "success, nothing done"
    results = []
    with ShardProgress(planned["shards"]) as progress:  # a bar on a terminal, log lines elsewhere
        for task in planned["shards"]:
            results.append(progress.done(task, pipeline.detect_shard(task)))
    try:
        summaries = finalize(results, planned["failed"])
    except RecordingsFailed as exc:
        summaries = exc.summaries
        print(json.dumps(summaries, indent=1))
        raise
    elapsed = time.monotonic() - began
    frames = sum(s["sampled_frames"] for s in summaries)
    print(json.dumps(summaries, indent=1))
    print(f"{frames} sampled frames in {elapsed:.1f} s ({frames / elapsed:.2f} frames/s)", file=sys.stderr)
    return 0


def _expected_hashes(values: list[str], sources: list[str]) -> dict[str, str]:
    from vigil.errors import ParameterError

    hashes = {}
    for value in values:
        uri, _, digest = value.rpartition("=") if "=" in value else ("", "", value)
        if not uri:
            if len(sources) != 1:
                raise ParameterError("--expected-sha256 HEX needs exactly one source; write URI=HEX otherwise")
            uri = sources[0]
        hashes[uri] = digest
    return hashes


def _query(args) -> int:
    from vigil.review import query

    con = query.connect(args.out, args.conn_id)
    if args.kind == "sql":
        result = query.run_sql(con, args.sql)
    elif args.kind == "reviews":
        result = query.reviews(con, query.Window(args.recording), args.current)
    elif args.kind == "similar":
        from vigil.review.similar import similar

        result = similar(con, args.recording, args.track, args.top)
    elif args.kind == "recordings":
        result = query.run_sql(con, "SELECT * FROM recordings ORDER BY recording_id")
    else:
        window = query.Window(args.recording, query.parse_time(args.start), query.parse_time(args.end))
        result = {
            "presence": lambda: query.presence(con, window, args.min_duration, args.min_persons),
            "tracks": lambda: query.tracks(con, window, args.min_duration, args.min_conf),
            "events": lambda: query.events(con, window, args.posture, args.min_duration, args.min_score, args.reviewed),
            "reviews": lambda: query.reviews(con, window, args.current),
            "frames": lambda: query.frames(con, window, args.status, args.min_persons),
            "counts": lambda: query.counts(con, window, args.bucket),
            "detections": lambda: query.detections(con, window, args.min_conf),
        }[args.kind]()
    print(query.format_result(result, args.format))
    return 0


def _report(args) -> int:
    from pathlib import Path

    from vigil.review.artifacts import write_report

    path = write_report(args.out, args.recording, args.html, args.blur_faces, args.conn_id)
    print(Path(path).resolve())
    return 0


def _verify(args) -> int:
    from vigil.store.manifest import verify
    from vigil.store.storage import storage_for

    from vigil.review.clips import verify_clips
    from vigil.review.decisions import verify_decisions
    from vigil.store.custody import check_args

    storage = storage_for(args.out, args.conn_id)
    report = verify(storage, args.out)
    report.problems.extend(verify_clips(args.out, args.conn_id) + verify_decisions(args.out, args.conn_id))
    custody = check_args(storage, args.out, args.trust + args.keyring, args.tsa_roots, args.head)
    report.checked += custody.checked
    report.problems += custody.problems
    report.notes += custody.notes
    if not args.quiet:
        for uri in report.checked:
            print(f"ok    {uri}")
        for note in report.notes:
            print(f"note  {note}")
    for problem in report.problems:
        print(f"FAIL  {problem}")
    verdict = "verified" if report.ok else f"{len(report.problems)} problem(s)"
    if not (args.trust or args.keyring):
        verdict += ", UNAUTHENTICATED (signatures and ledger not checked: pass --trust PUBKEY.pem)"
    print(f"{args.out}: {len(report.checked)} files checked, {verdict}", file=sys.stderr)
    return 0 if report.ok else 1


def _review(args) -> int:
    import getpass

    from vigil.review.decisions import record_decision

    target, number = ("track", args.track) if args.track is not None else ("event", args.event)
    record = record_decision(args.out, args.recording, target, number, args.decision, args.note,
                             args.reviewer or getpass.getuser(), args.conn_id)  # fmt: skip
    print(json.dumps(record, indent=2))
    return 0


def _case(args) -> int:
    from vigil.review.case import case_data, write_case
    from vigil.review.clips import make_clip

    if args.make_clips:
        for lane in case_data(args.out, args.conn_id)["lanes"]:
            for event in lane["events"]:
                if event[-1] is None:
                    make_clip(args.out, lane["id"], event[3], event[4], args.pad, args.conn_id, args.source_conn_id)
    print(write_case(args.out, args.html, args.conn_id))
    return 0


def _clip(args) -> int:
    from vigil.review.clips import make_clip
    from vigil.review.query import parse_time

    start, end = parse_time(args.start), parse_time(args.end)
    if not isinstance(start, float) or not isinstance(end, float):
        from vigil.errors import ParameterError

        raise ParameterError("--from and --to are recording times (HH:MM:SS, MM:SS or seconds), not wall-clock times")
    record = make_clip(args.out, args.recording, start, end, args.pad, args.conn_id, args.source_conn_id)
    print(json.dumps(record.to_dict(), indent=2))
    return 0


def _export_cvat(args) -> int:
    from pathlib import Path

    from vigil.review.cvat import labels_json
    from vigil.review.cvat_sync import export_cvat

    Path(args.to).write_bytes(export_cvat(args.out, args.recording, not args.no_boxes, args.conn_id))
    if args.labels:
        Path(args.labels).write_text(labels_json(not args.no_boxes))
    print(Path(args.to).resolve())
    return 0


def _import_cvat(args) -> int:
    from pathlib import Path

    from vigil.review.cvat_sync import import_cvat

    records = import_cvat(args.out, args.recording, Path(args.file).read_bytes(), args.reviewer, args.conn_id)
    print(json.dumps(records, indent=2))
    print(f"{len(records)} review decision(s) recorded", file=sys.stderr)
    return 0


def _stamp(args) -> int:
    from vigil.store.custody import stamp_all
    from vigil.store.storage import storage_for

    still = stamp_all(storage_for(args.out, args.conn_id), args.out, args.retries)
    for uri, urls in still.items():
        print(f"not yet timestamped  {uri}  ({', '.join(urls)})")
    return 1 if still else 0


def _export(args) -> int:
    from vigil.store.export import export

    print(export(args.out, args.to, args.recording, args.conn_id))
    return 0


def _concat(args) -> int:
    from vigil.media.remux import concat_copies

    print(concat_copies(args.source, args.target, args.copies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
