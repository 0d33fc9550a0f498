"""The two texts of an evidence package: ``VERIFY.txt`` (how to check it with standard tools) and
``PROCESSING.md`` (what was done to which source, with what, when, by which run).

Commands in ``VERIFY.txt`` are the lines starting with ``    $ ``; each runs in the package
folder with bash, coreutils, grep and OpenSSL 3, and exits non-zero when its check fails (the
tests run them exactly as written).
"""

from __future__ import annotations

import json

from vigil.store.ledger import GENESIS, Entry, parse

# The signed records of a package as shell globs (store.layout.sealed_record_uris), and their tokens.
RECORDS = "manifests/*.json clips/*/*.json reviews/*/*.json"
TOKENS = "manifests/*.tsr clips/*/*.tsr reviews/*/*.tsr"


def verify_txt(keys: list[str], has_roots: bool, head: str | None) -> str:
    trust = " ".join(f"--trust keys/{fp.removeprefix('sha256:')}.pem" for fp in keys)
    parts = [
        "HOW TO VERIFY THIS EVIDENCE PACKAGE\n===================================\n",
        "Run the commands (lines starting with '$') in this folder: bash, coreutils, grep and OpenSSL 3\n"
        "are all they need. Each exits with status 0 when its check passes and stops at the first failure.\n"
        "The folder can be moved or copied anywhere first: every path below is relative.\n",
    ]
    if keys:
        listed = "\n".join(f"     {fp}" for fp in keys)
        parts.append(
            "1. The signing key(s). keys/<hex>.pem is the public half of a key that signed the records. A key in\n"
            "   the package proves nothing by itself: its fingerprint (the SHA-256 of the raw 32-byte key)\n"
            f"   must match the one the operator published. This package's records name:\n{listed}\n\n"
            "    $ for k in keys/*.pem; do echo \"$k sha256:$(openssl pkey -pubin -in \"$k\" -outform DER | tail -c 32 "
            "| sha256sum | cut -d' ' -f1)\"; done\n\n"
            "2. Each record is exactly what vigil wrote, signed (Ed25519) by the key its .sig.key file names: the\n"
            "   manifests (what each run wrote), the clip records (clips/*/*.mp4.json: which source bytes each\n"
            "   clip copies) and the review decisions (reviews/*/*.json: who decided what, on which rows):\n\n"
            f"    $ shopt -s nullglob; for m in {RECORDS}; do k=keys/$(cut -d: -f2 \"$m.sig.key\" | tr -d '\\n').pem; "
            "openssl pkeyutl -verify -pubin -inkey \"$k\" -rawin -in \"$m\" -sigfile \"$m.sig\" || exit 1; done\n"
        )
    else:
        parts.append("1-2. THE RECORDS (manifests, clip records, review decisions) ARE NOT SIGNED: no signing key\n"
                     "     was configured when they were written. Nothing below shows that they are what vigil wrote.\n")  # fmt: skip
    parts.append(
        "3. Every data file, clip and review attachment is the one its record lists: SHA256SUMS holds their\n"
        "   hashes, and each of those hashes appears in a (signed) record:\n\n"
        "    $ sha256sum -c --quiet SHA256SUMS\n"
        "    $ shopt -s nullglob; while read -r h f; do grep -qE \"\\\"(clip_)?sha256\\\": \\\"$h\\\"\" "
        f"{RECORDS} || {{ echo \"not in a record: $f\"; exit 1; }}; done < SHA256SUMS\n"
    )
    parts.append(
        "4. The case ledger (ledger/, one entry per record written) is one unbroken chain: each entry holds\n"
        "   the SHA-256 of the entry before it. The last line printed is the head; compare it with the head\n"
        f"   recorded elsewhere (the Airflow asset event of the run). At export it was {head or '(no ledger)'}\n"
        "   (SEQ:SHA256).\n\n"
        f"    $ prev={GENESIS}; for e in ledger/*.json; do grep -q \"\\\"prev\\\": \\\"$prev\\\"\" \"$e\" || "
        "{ echo \"chain broken at $e\"; exit 1; }; prev=$(sha256sum \"$e\" | cut -d' ' -f1); done; echo \"head $prev\"\n"
    )
    if has_roots:
        parts.append(
            "5. Trusted timestamps (RFC 3161): each token (*.tsr) is over its record's exact bytes and was issued\n"
            "   by a TSA whose certificate chains to tsa-roots.pem; the second command prints the attested times.\n\n"
            f"    $ shopt -s nullglob; for t in {TOKENS}; do openssl ts -verify -data \"${{t%.tsa-*}}\" -in \"$t\" "
            "-CAfile tsa-roots.pem || exit 1; done\n"
            f"    $ shopt -s nullglob; for t in {TOKENS}; do echo \"$t\"; openssl ts -reply -in \"$t\" -text "
            "| grep 'Time stamp'; done\n"
        )
    else:
        parts.append("5. No timestamp tokens or TSA roots are in this package: nothing here attests when it existed.\n")
    roots = " --tsa-roots tsa-roots.pem" if has_roots else ""
    parts.append(
        "6. All of the above at once, with vigil (pip install vigil at the version PROCESSING.md names):\n\n"
        f"   vigil verify \"file://$PWD\" {trust}{roots}\n\n"
        "   export.json lists the recordings this package was made to hold; a recording missing from it\n"
        "   is caught by the ledger check only if its ledger entries are (steps 4 and 6).\n"
    )
    return "\n".join(parts)


def processing_md(chosen: list[tuple[str, dict]], latest: dict[str, Entry], entries: list[tuple[str, bytes]],
                  provenance: dict[str, dict], records: list[tuple[str, dict]] = ()) -> str:  # fmt: skip
    """One section per recording: source, what was done, with what, when and by which run; then the
    clips cut from the sources and the review decisions, each with its ledger entry."""
    lines = ["# Processing record", "",
             "What vigil did to each source recording in this package. Hashes are SHA-256. The originals were only "
             "read, never changed.", ""]  # fmt: skip
    by_path = {}
    for uri, data in entries:
        entry = parse(data, uri)
        by_path.setdefault(entry.manifest, []).append(entry)
    for path, m in chosen:
        src = m["source"]
        entry = latest.get(path)
        lines += [
            f"## {m['recording_id']}", "",
            "### Source (the original)", "",
            f"- URI: `{src['uri']}`",
            f"- SHA-256: `{src['sha256']}` (of every byte, taken while it was read)",
            f"- Size: {src['size']} bytes; last modified: {src.get('last_modified') or 'unknown'}",
            f"- ETag: {src.get('etag') or '(none: not object storage)'}",
        ]  # fmt: skip
        if src.get("version_id"):
            lines.append(f"- Version id: `{src['version_id']}`. The source bucket is versioned: this object version "
                         "is the evidentiary copy, and later writes to the same key cannot replace it.")  # fmt: skip
        else:
            lines.append("- Version id: none (the source location is not versioned): the SHA-256 above is what "
                         "identifies the evidentiary copy.")  # fmt: skip
        totals = m.get("totals", {})
        lines += [
            "", "### What was done", "",
            f"- Decoded at {m['params'].get('sample_fps')} sampled frames per second in {len(m['shards'])} time shards "
            f"covering {m['duration_s']} s; {totals.get('sampled_frames')} frames sampled.",
            f"- Person and pose detection with model `{m['model'].get('name')}` (SHA-256 `{m['model'].get('sha256')}`) "
            f"on runtime `{', '.join(m.get('runtimes') or [m.get('runtime')])}`; {totals.get('detections')} detections.",
            f"- Then tracking, presence intervals and posture events ({totals.get('tracks')} tracks, "
            f"{totals.get('presence_intervals')} presence intervals, {totals.get('pose_events')} posture events), "
            "and review pictures.",
            f"- Coverage (seconds): " + ", ".join(f"{k.removesuffix('_seconds')} {v}" for k, v in totals.items()
                                                  if k.endswith("_seconds")),
            f"- Warnings: {'; '.join(m.get('warnings') or []) or 'none'}",
            "", "Parameters (as given to the run):", "", "```json",
            json.dumps(m["params"], indent=2, sort_keys=True), "```", "",
            "### When, by which run, with which software", "",
            f"- Finalized at {m['finalized_at']} by vigil {m['vigil_version']} (schema {m['schema_version']}).",
        ]  # fmt: skip
        shard = provenance.get(path, {})
        if shard.get("versions"):
            lines.append("- Software (from the shard files' provenance): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(shard["versions"].items())) + ".")  # fmt: skip
        if shard.get("airflow"):
            lines.append("- Airflow: " + ", ".join(f"{k} `{v}`" for k, v in sorted(shard["airflow"].items())) + ".")
        for e in by_path.get(path, []):
            current = " (this manifest)" if entry and e.seq == entry.seq else " (superseded)"
            lines.append(f"- Ledger entry {e.seq}: run `{e.run_id}` at {e.time}, manifest SHA-256 "
                         f"`{e.manifest_sha256}`, signed by {e.key_fingerprint or 'nobody (unsigned)'}{current}.")  # fmt: skip
        lines += ["", "### Files", "", "| file | SHA-256 | rows |", "|---|---|---|"]
        for shard in m["shards"]:
            for f in shard["files"].values():
                lines.append(f"| `{f['path']}` | `{f['sha256']}` | {f.get('rows', '')} |")
        for f in [*m.get("derived", {}).values(), *m.get("artifacts", {}).values()]:
            lines.append(f"| `{f['path']}` | `{f['sha256']}` | {f.get('rows', '')} |")
        lines.append("")
    return "\n".join(lines + _records_md(records, latest))


def _records_md(records: list[tuple[str, dict]], latest: dict[str, Entry]) -> list[str]:
    def ledgered(path: str) -> str:
        e = latest.get(path)
        return f"entry {e.seq}, signed by {e.key_fingerprint or 'nobody (unsigned)'}" if e else "not in the ledger"

    clips = [(p, r) for p, r in records if "clip_path" in r]
    decisions = [(p, r) for p, r in records if "clip_path" not in r]
    lines = ["## Evidence clips", "",
             "Stream copies (no re-encode) of source packets, from the keyframe at or before the requested start. "
             "Times are seconds of recording time.", "",
             "| clip | SHA-256 | source SHA-256 | copied (s) | source bytes | record | ledger |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for path, r in clips:
        span = f"{r['actual']['start_s']:.3f}–{r['actual']['end_s']:.3f}"
        byte_range = f"{r['copied'].get('byte_start')}–{r['copied'].get('byte_end')}"
        lines.append(f"| `{r['clip_path']}` | `{r['clip_sha256']}` | `{r['source'].get('sha256')}` | {span} | {byte_range} "
                     f"| `{path}` | {ledgered(path)} |")  # fmt: skip
    lines += ["" if clips else "None.", "", "## Review decisions", "",
              "Made beside the analysis, never inside it; a later decision on the same target supersedes an earlier one.",
              "", "| recording | target | decision | reviewer | at | note | record | ledger |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for path, r in decisions:
        note = str(r.get("note", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['recording_id']} | {r['target']} {r['target_id']} | {r['decision']} | {r['reviewer']} "
                     f"| {r['decided_at']} | {note} | `{path}` | {ledgered(path)} |")  # fmt: skip
    return lines + (["", "None."] if not decisions else []) + [""]
