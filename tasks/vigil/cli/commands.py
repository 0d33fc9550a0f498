"""What each ``vigil`` command does: parsed arguments in, the library's steps called, results printed."""

from __future__ import annotations

import json
import sys
import time

from vigil.cli.params import params_from_args


def run_process(args) -> int:
    from vigil.config import RunRequest
    from vigil.errors import RecordingsFailed
    from vigil.errors import InputError
    from vigil.orchestration import pipeline, planning
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
    planned = planning.plan_all(request, planning.discover(request))
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


def run_query(args) -> int:
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


def run_report(args) -> int:
    from pathlib import Path

    from vigil.review.artifacts import write_report

    path = write_report(args.out, args.recording, args.html, args.blur_faces, args.conn_id)
    print(Path(path).resolve())
    return 0


def run_verify(args) -> int:
    from vigil.store.integrity import verify
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


def run_review(args) -> int:
    import getpass

    from vigil.review.decisions import record_decision

    target, number = ("track", args.track) if args.track is not None else ("event", args.event)
    record = record_decision(args.out, args.recording, target, number, args.decision, args.note,
                             args.reviewer or getpass.getuser(), args.conn_id)  # fmt: skip
    print(json.dumps(record, indent=2))
    return 0


def run_case(args) -> int:
    from vigil.review.case import case_data, write_case
    from vigil.review.clips import make_clip

    if args.make_clips:
        for lane in case_data(args.out, args.conn_id)["lanes"]:
            for event in lane["events"]:
                if event[-1] is None:
                    make_clip(args.out, lane["id"], event[3], event[4], args.pad, args.conn_id, args.source_conn_id)
    print(write_case(args.out, args.html, args.conn_id))
    return 0


def run_clip(args) -> int:
    from vigil.review.clips import make_clip
    from vigil.review.query import parse_time

    start, end = parse_time(args.start), parse_time(args.end)
    if not isinstance(start, float) or not isinstance(end, float):
        from vigil.errors import ParameterError

        raise ParameterError("--from and --to are recording times (HH:MM:SS, MM:SS or seconds), not wall-clock times")
    record = make_clip(args.out, args.recording, start, end, args.pad, args.conn_id, args.source_conn_id)
    print(json.dumps(record.to_dict(), indent=2))
    return 0


def run_export_cvat(args) -> int:
    from pathlib import Path

    from vigil.review.cvat import labels_json
    from vigil.review.cvat_sync import export_cvat

    Path(args.to).write_bytes(export_cvat(args.out, args.recording, not args.no_boxes, args.conn_id))
    if args.labels:
        Path(args.labels).write_text(labels_json(not args.no_boxes))
    print(Path(args.to).resolve())
    return 0


def run_import_cvat(args) -> int:
    from pathlib import Path

    from vigil.review.cvat_sync import import_cvat

    records = import_cvat(args.out, args.recording, Path(args.file).read_bytes(), args.reviewer, args.conn_id)
    print(json.dumps(records, indent=2))
    print(f"{len(records)} review decision(s) recorded", file=sys.stderr)
    return 0


def run_stamp(args) -> int:
    from vigil.store.custody import stamp_all
    from vigil.store.storage import storage_for

    still = stamp_all(storage_for(args.out, args.conn_id), args.out, args.retries)
    for uri, urls in still.items():
        print(f"not yet timestamped  {uri}  ({', '.join(urls)})")
    return 1 if still else 0


def run_export(args) -> int:
    from vigil.store.export import export

    print(export(args.out, args.to, args.recording, args.conn_id))
    return 0


def run_concat(args) -> int:
    from vigil.media.remux import concat_copies

    print(concat_copies(args.source, args.target, args.copies))
    return 0

