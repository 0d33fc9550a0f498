"""Where every output lives under an output location: the one owner of output paths.

    detections/recording_id=<id>/shard-<NNNNN>-<key>.parquet   shard tables (key: content, range,
    frames/recording_id=<id>/shard-<NNNNN>-<key>.parquet           parameters, model, run generation)
    commits/recording_id=<id>/shard-<NNNNN>-<key>.json        which attempt's shard tables won (store/commit.py)
    tracks/recording_id=<id>/derived-<key>.parquet             derived tables (key: their inputs' hashes)
    manifests/<id>.<run key>.json                              the files a reader may trust, per run
    review/recording_id=<id>/<run key>/<name>                  review pictures and report, per run
    clips/recording_id=<id>/<clip>.mp4, <clip>.mp4.json         evidence clips and their sealed records
    reviews/recording_id=<id>/<record>.json                    review decisions (sealed records)
    <sealed record>.sig, .sig.key, .tsa-<h>.tsr                 signature, signer, timestamp tokens of a
                                                               manifest, clip record or review decision
    ledger/<seq, 10 digits>.json                               the custody ledger (store/ledger.py)
    keys/<fingerprint hex>.pem                                 public keys of the signers (store/custody.py)
    indexes/<sha256>.moov                                      copies of recordings' MP4 indexes (store/index_copy.py)

A *run key* names what distinguishes two runs over the same recording: the parameter fingerprint,
the recording's wall-clock start, face blurring, and (with ``force``) the generation of the run.
So a nightly run and a manual run with other settings never overwrite each other's manifest or
review files, and ``force`` writes new keys instead of replacing files an existing manifest lists.
Shard files need no run key of their own: their keys already hash everything that decides them.
"""

from __future__ import annotations

import hashlib
import logging
import re

from vigil.store.schema import ALL_TABLES, MANIFESTS
from vigil.store.storage import Storage
from vigil.uri import join_uri

log = logging.getLogger(__name__)

PARTITION = "recording_id"
REVIEW = "review"
CLIPS = "clips"
REVIEWS = "reviews"  # review decisions (sealed records), not the review pictures
LEDGER = "ledger"
KEYS = "keys"
COMMITS = "commits"  # one marker per shard: the attempt whose tables are the shard's
INDEXES = "indexes"  # copies of MP4 indexes, read instead of the recording's (checked by SHA-256)
RESERVED = (*ALL_TABLES, MANIFESTS, REVIEW, CLIPS, REVIEWS, LEDGER, KEYS, COMMITS, INDEXES)  # top-level names nothing else may use
_ATTEMPT_FILE = re.compile(r"[^/]+/(?P<partition>[^/]+)/(?P<key>shard-\d{5}-[0-9a-f]{16})-a[0-9a-f]{12}\.parquet")
_MANIFEST_NAME = re.compile(r"(?P<recording>.+?)(?:\.(?P<run>[A-Za-z0-9_-]+))?\.json")


def partition(recording_id: str) -> str:
    """The Hive partition directory of a recording: ``recording_id=<id>``."""
    return f"{PARTITION}={recording_id}"


def partition_value(uri: str) -> str | None:
    """The recording id of a partitioned output URI, or None when it has none."""
    for part in uri.split("/"):
        if part.startswith(PARTITION + "="):
            return part.split("=", 1)[1]
    return None


def _digest(*material: str) -> str:
    return hashlib.sha256("|".join(material).encode()).hexdigest()[:16]


def shard_key(index: int, *material: str) -> str:
    """``shard-<index>-<16 hex>``: deterministic in everything that decides the shard's rows."""
    return f"shard-{index:05d}-{_digest(*material)}"


def derived_key(*material: str, kind: str = "derived") -> str:
    """``derived-<16 hex>`` (or ``<kind>-…``): keyed by the hashes of the files it was computed from."""
    return f"{kind}-{_digest(*material)}"


def table_uri(out: str, table: str, recording_id: str, key: str) -> str:
    """A Parquet file of one table (shard or derived) of one recording."""
    return join_uri(out, table, partition(recording_id), f"{key}.parquet")


def attempt_uri(out: str, table: str, recording_id: str, key: str, attempt: str) -> str:
    """A shard table written by one attempt: attempts never share a file name, so no attempt's
    table can be mixed with another's; the shard's commit marker says which attempt won."""
    return table_uri(out, table, recording_id, f"{key}-{attempt}")


def commit_uri(out: str, recording_id: str, key: str) -> str:
    """The commit marker of one shard (created once, conditionally, by the attempt that wins)."""
    return join_uri(out, COMMITS, partition(recording_id), f"{key}.json")


def commit_path_of(table_path: str) -> str | None:
    """The commit marker's path (relative to the output) of an attempt-keyed shard table path;
    None for a shard file written before commit markers existed (``shard-<NNNNN>-<key>.parquet``)."""
    found = _ATTEMPT_FILE.fullmatch(table_path)
    return f"{COMMITS}/{found['partition']}/{found['key']}.json" if found else None


def run_key(fingerprint: str, recording_start: str | None, blur_faces: bool, generation: str | None) -> str:
    """What tells two runs over one recording apart (see the module docstring), as a file name part."""
    parts = [fingerprint]
    if recording_start:
        parts.append("t" + hashlib.sha256(recording_start.encode()).hexdigest()[:8])
    if blur_faces:
        parts.append("blurred")
    if generation:
        parts.append(generation)
    return "-".join(parts)


def index_copy_uri(out: str, sha256: str) -> str:
    """A copy of a recording's MP4 index, named by its own SHA-256 (store/index_copy.py)."""
    return join_uri(out, INDEXES, f"{sha256}.moov")


def manifest_uri(out: str, recording_id: str, run: str) -> str:
    return join_uri(out, MANIFESTS, f"{recording_id}.{run}.json")


def relative_path(uri: str, out: str) -> str:
    """A URI under the output location, as the path the ledger records for it."""
    prefix = out.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise ValueError(f"{uri} is not under the output location {out}")
    return uri[len(prefix) :]


def manifest_uris(storage: Storage, out: str) -> list[str]:
    """Every manifest under ``out`` (``.json`` only: anything else there is not a manifest), sorted."""
    return sorted(i.uri for i in storage.list(join_uri(out, MANIFESTS)) if i.uri.endswith(".json"))


def manifest_recording(uri: str) -> str:
    """The recording a manifest's name says it is for (for reports about a manifest that cannot be read).
    Older outputs named manifests ``<id>.json``; they are read the same way."""
    name = uri.rsplit("/", 1)[-1]
    found = _MANIFEST_NAME.fullmatch(name)
    if found and found["run"] and not re.search(r"-[0-9a-f]{12}$", found["recording"]):
        return name.removesuffix(".json")  # an old ``<id>.json`` whose id holds a dot
    return found["recording"] if found else name


def sealed_record_uris(storage: Storage, out: str) -> list[str]:
    """Every record in the custody trail (signed, ledgered, timestamped: store/custody.py), sorted:
    manifests, clip records and review decisions. Not the CVAT attachments below a recording's
    decisions (``reviews/<partition>/cvat/``): the decision that attaches one lists its SHA-256."""
    records = manifest_uris(storage, out)
    for folder in (CLIPS, REVIEWS):
        prefix = join_uri(out, folder).rstrip("/") + "/"
        for info in storage.list(prefix):
            parts = info.uri[len(prefix):].split("/")
            if info.uri.endswith(".json") and len(parts) == 2 and parts[0].startswith(PARTITION + "="):
                records.append(info.uri)
    return sorted(records)


def review_uri(out: str, recording_id: str, run: str, name: str) -> str:
    """A review picture or report of one run over one recording."""
    return join_uri(out, REVIEW, partition(recording_id), run, name)


def clips_prefix(out: str, recording_id: str) -> str:
    """Reserved for evidence clips of a recording."""
    return join_uri(out, CLIPS, partition(recording_id))


def ledger_prefix(out: str) -> str:
    """Reserved for the custody ledger of an output location."""
    return join_uri(out, LEDGER)
