"""Output paths (store/layout.py): runs with different settings never collide, a manifest lists only
its own run's files, ``force`` never replaces a listed file, one broken manifest hides nothing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from vigil.store import layout

FAST = ["--sample-fps", "0.5", "--shard-seconds", "60"]


@pytest.mark.parametrize(
    "other",
    [
        {"fingerprint": "bbbbbbbbbbbb"},
        {"recording_start": "2024-03-01T22:15:00Z"},
        {"blur_faces": True},
        {"generation": "g20240301T221500000000Z"},
    ],
)
def test_run_keys_differ_in_whatever_distinguishes_two_runs(other):
    base = {"fingerprint": "aaaaaaaaaaaa", "recording_start": None, "blur_faces": False, "generation": None}
    one, two = layout.run_key(**base), layout.run_key(**{**base, **other})
    assert one != two
    out = "file:///out"
    assert layout.manifest_uri(out, "cam-0123456789ab", one) != layout.manifest_uri(out, "cam-0123456789ab", two)
    assert layout.review_uri(out, "cam-0123456789ab", one, "report.html") != layout.review_uri(
        out, "cam-0123456789ab", two, "report.html"
    )


@pytest.mark.parametrize(
    "name, recording",
    [
        ("cam.1-0123456789ab.aaaaaaaaaaaa-blurred.json", "cam.1-0123456789ab"),
        ("cam-0123456789ab.json", "cam-0123456789ab"),  # an output written before run keys
        ("cam.1-0123456789ab.json", "cam.1-0123456789ab"),
    ],
)
def test_a_manifest_name_says_its_recording(name, recording):
    assert layout.manifest_recording(f"file:///out/manifests/{name}") == recording


def test_partitions_round_trip():
    uri = layout.table_uri("s3://b/out", "frames", "cam-0123456789ab", "shard-00001-ab")
    assert uri == "s3://b/out/frames/recording_id=cam-0123456789ab/shard-00001-ab.parquet"
    assert layout.partition_value(uri) == "cam-0123456789ab"


def _vigil(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vigil.cli", *args], capture_output=True, text=True)


def _listed(out: Path) -> dict[str, str]:
    """Every file any manifest lists -> its SHA-256 as it is on disk now."""
    from vigil.store.file_backend import FileStorage
    from vigil.store.manifest import read_manifests
    from vigil.uri import file_uri, join_uri

    listing = read_manifests(FileStorage(), file_uri(out))
    assert not listing.problems
    uris = {join_uri(file_uri(out), e["path"]) for _, m in listing.found for e in m.entries()}
    return {uri: hashlib.sha256(FileStorage().read_bytes(uri)).hexdigest() for uri in uris}


@pytest.mark.slow
def test_runs_with_other_settings_and_forced_runs_never_overwrite_listed_files(tmp_path, footage):
    from vigil.store.file_backend import FileStorage
    from vigil.store.manifest import read_manifests
    from vigil.uri import file_uri

    source, out = tmp_path / "drop" / "cam.mp4", tmp_path / "out"
    source.parent.mkdir()
    source.write_bytes(footage.read_bytes())
    assert _vigil("process", file_uri(source), "--out", file_uri(out), *FAST).returncode == 0
    first = _listed(out)
    runs = [[*FAST, "--blur-faces"], [*FAST, "--recording-start", "2024-03-01T22:15:00Z"], [*FAST, "--force"],
            ["--sample-fps", "1", "--shard-seconds", "60"]]  # fmt: skip
    for extra in runs:
        done = _vigil("process", file_uri(source), "--out", file_uri(out), *extra)
        assert done.returncode == 0, done.stderr
        now = _listed(out)
        changed = [uri for uri, digest in first.items() if now.get(uri) != digest]
        assert changed == [], f"{extra} replaced files an earlier manifest lists: {changed}"
        first = now
    manifests = [m for _, m in read_manifests(FileStorage(), file_uri(out)).found]
    assert len({m.run_key for m in manifests}) == len(runs) + 1 == len(manifests)
    for manifest in manifests:  # each lists only its own run's review files
        assert all(f"/{manifest.run_key}/" in e["path"] for e in manifest.artifacts.values())
    assert _vigil("verify", file_uri(out)).returncode == 0


def test_one_malformed_manifest_is_reported_and_hides_no_other(tmp_path):
    from vigil.review import query
    from vigil.store.file_backend import FileStorage
    from vigil.store.manifest import read_manifests
    from vigil.uri import file_uri

    out = tmp_path / "out"
    (out / "manifests").mkdir(parents=True)
    good = _minimal_manifest()
    from vigil.store.manifest import manifest_bytes

    (out / "manifests" / "cam-0123456789ab.aaaaaaaaaaaa.json").write_bytes(manifest_bytes(good))
    (out / "manifests" / "broken-0123456789ab.aaaaaaaaaaaa.json").write_bytes(b"{not json")
    (out / "manifests" / "README.txt").write_text("not a manifest, not listed")
    listing = read_manifests(FileStorage(), file_uri(out))
    assert [m.recording_id for _, m in listing.found] == ["cam-0123456789ab"]
    assert len(listing.problems) == 1 and "broken-0123456789ab" in listing.problems[0][1]
    assert [m.recording_id for m in query.manifests(file_uri(out))] == ["cam-0123456789ab"]


def _minimal_manifest() -> dict:
    """A version-1 manifest as earlier vigil wrote it (one ``runtime``, no run key), with no shards."""
    return {
        "schema_version": 1, "recording_id": "cam-0123456789ab",
        "source": {"uri": "file:///in/cam.mp4", "size": 1, "etag": None, "last_modified": None, "version_id": None,
                   "sha256": "0" * 64},
        "duration": "0", "duration_s": 0.0, "frame_count": 0, "probe": {}, "warnings": [], "params": {},
        "params_fingerprint": "aaaaaaaaaaaa", "model": {"name": "m", "sha256": "0" * 64}, "runtime": "onnxruntime-x/cpu",
        "recording_start": None, "shards": [], "coverage": [], "derived": {}, "artifacts": {},
        "totals": {"sampled_frames": 0, "detections": 0}, "finalized_at": "2024-01-01T00:00:00+00:00",
        "vigil_version": "0",
    }  # fmt: skip


def test_a_version_1_manifest_reads_and_writes_back_byte_for_byte():
    from vigil.store.manifest import Manifest, manifest_bytes

    old = _minimal_manifest()
    assert manifest_bytes(Manifest.from_dict(old).to_dict()) == manifest_bytes(old)
