import threading

import pytest

from vigil.errors import ObjectNotFound, ParameterError
from vigil.storage import FileStorage, S3RangeReader, file_uri, is_within, join_uri, parse_uri


@pytest.mark.parametrize(
    "uri, message",
    [
        ("", "expected a storage URI"),
        ("/data/x.mp4", "file:///absolute/path"),
        ("http://host/x.mp4", "unsupported URI scheme"),
        ("s3:///key", "must name a bucket"),
        ("file://host/x", "file:///absolute/path"),
        ("s3://b/a/../x", "'..' segments"),
        ("s3://b/x?versionId=1", "no query"),
    ],
)
def test_parse_uri_rejects(uri, message):
    with pytest.raises(ParameterError, match=message):
        parse_uri(uri)


def test_is_within_respects_path_segments():
    assert is_within("s3://b/drop/x.mp4", "s3://b/drop")
    assert is_within("s3://b/drop", "s3://b/drop/")
    assert not is_within("s3://b/drop-out/x", "s3://b/drop")
    assert not is_within("s3://other/drop/x", "s3://b/drop")
    assert is_within("s3://b/anything", "s3://b")


def test_file_write_is_atomic_and_listed(tmp_path):
    storage = FileStorage()
    uri = join_uri(file_uri(tmp_path), "a", "b.bin")
    assert storage.write_bytes(uri, b"one")
    assert storage.write_bytes(uri, b"two")  # a retry overwrites
    assert storage.read_bytes(uri) == b"two"
    assert [i.uri for i in storage.list(file_uri(tmp_path))] == [uri]
    assert not [p for p in (tmp_path / "a").iterdir() if p.name != "b.bin"], "no temporary file left behind"


def test_file_conditional_create_has_one_winner(tmp_path):
    storage = FileStorage()
    uri = join_uri(file_uri(tmp_path), "shard.parquet")
    outcomes = []
    threads = [
        threading.Thread(target=lambda i=i: outcomes.append(storage.write_bytes(uri, bytes([i]) * 1000, if_absent=True)))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False] * 7 + [True]
    data = storage.read_bytes(uri)
    assert len(data) == 1000 and len(set(data)) == 1, "the winner's file is complete and unmixed"


def test_file_missing_object_is_not_found(tmp_path):
    with pytest.raises(ObjectNotFound, match="no such file"):
        FileStorage().stat(file_uri(tmp_path / "gone.mp4"))


def test_s3_roundtrip_list_and_conditional_create(s3_storage):
    bucket = s3_storage.buckets["out"]
    uri = f"s3://{bucket}/detections/recording_id=x/shard-00000.parquet"
    assert s3_storage.write_bytes(uri, b"first", if_absent=True)
    assert not s3_storage.write_bytes(uri, b"second", if_absent=True)
    assert s3_storage.read_bytes(uri) == b"first"
    s3_storage.write_bytes(f"s3://{bucket}/detections-old/y", b"z")
    assert [i.uri for i in s3_storage.list(f"s3://{bucket}/detections")] == [uri]
    info = s3_storage.stat(uri)
    assert info.size == 5 and info.etag


def test_s3_missing_object_is_not_found(s3_storage):
    with pytest.raises(ObjectNotFound):
        s3_storage.stat(f"s3://{s3_storage.buckets['source']}/nope.mp4")


def test_s3_range_reader_reads_only_requested_blocks(s3_storage, footage):
    bucket = s3_storage.buckets["source"]
    uri = f"s3://{bucket}/cam/footage.mp4"
    data = footage.read_bytes()
    s3_storage.write_bytes(uri, data)
    info = s3_storage.stat(uri)
    reader = S3RangeReader(s3_storage.client, bucket, "cam/footage.mp4", info, block_size=256 << 10)
    reader.seek(2_000_000)
    assert reader.read(100) == data[2_000_000:2_000_100]
    reader.seek(-10, 2)
    assert reader.read() == data[-10:]
    assert reader.requests == 2
    assert reader.bytes_fetched <= 2 * (256 << 10)
