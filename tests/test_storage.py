import io
import threading

import pytest

from vigil.errors import ObjectNotFound, ParameterError
from vigil.store.file_backend import FileStorage
from vigil.store.s3_reader import S3RangeReader
from vigil.uri import file_uri, is_within, join_uri, parse_uri


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
    reader = S3RangeReader(s3_storage.client, bucket, "cam/footage.mp4", info)
    reader.seek(2_000_000)
    assert reader.read(100) == data[2_000_000:2_000_100]
    reader.seek(-10, 2)
    assert reader.read() == data[-10:]
    assert reader.requests == 2
    assert reader.bytes_fetched <= 2 * (64 << 10)


def test_s3_range_reader_stops_at_the_expected_end_and_starts_small_past_it(s3_storage):
    bucket = s3_storage.buckets["source"]
    data = bytes(range(256)) * (64 << 10)  # 16 MiB
    s3_storage.write_bytes(f"s3://{bucket}/big.bin", data)
    reader = S3RangeReader(s3_storage.client, bucket, "big.bin", s3_storage.stat(f"s3://{bucket}/big.bin"),
                           min_read=32 << 10)  # fmt: skip
    reader.expect(5_000_000)
    while reader.tell() < 5_000_000:  # sequential reads: GETs double, but none goes past the end
        assert reader.read(min(32 << 10, 5_000_000 - reader.tell()))
    assert reader.bytes_fetched == 5_000_000
    assert reader.requests < 10
    assert reader.read(1000) == data[5_000_000:5_001_000]
    assert reader.bytes_fetched == 5_000_000 + (32 << 10), "past the expected end, GETs start small again"


def test_s3_range_reader_fetches_given_ranges_in_one_request_each_and_reads_stop_at_their_ends(s3_storage):
    bucket = s3_storage.buckets["source"]
    data = bytes(range(256)) * 4096  # 1 MiB
    s3_storage.write_bytes(f"s3://{bucket}/index.bin", data)
    reader = S3RangeReader(s3_storage.client, bucket, "index.bin", s3_storage.stat(f"s3://{bucket}/index.bin"),
                           min_read=32 << 10)  # fmt: skip
    reader.fetch_ranges([(0, 4096), (700_000, 1_020_000), (2048, 3000)])  # the last lies inside the first
    assert (reader.requests, reader.bytes_fetched) == (2, 4096 + 320_000)
    assert reader.read(32 << 10) == data[:4096], "a read stops where a given range ends"
    reader.seek(700_000)
    while (at := reader.tell()) < 1_020_000:  # FFmpeg working through an index in small reads
        assert reader.read(6000) == data[at : min(at + 6000, 1_020_000)]
    assert (reader.requests, reader.bytes_fetched) == (2, 4096 + 320_000), "all from what was fetched"
    reader.fetch_ranges([(700_000, 1_020_000)])
    assert reader.requests == 2, "a range already kept is not fetched again"
    reader.seek(500_000)
    assert reader.read(8) == data[500_000:500_008]  # a box header read (planning walks the boxes): 32 KiB from there
    fetched = reader.bytes_fetched
    reader.fetch_ranges([(500_000, 600_000)])  # then the box whole
    assert reader.bytes_fetched - fetched == 600_000 - (500_000 + (32 << 10)), "what is kept from its start is not fetched again"
    reader.seek(500_000)
    got = b""
    while len(got) < 100_000:
        got += reader.read(100_000 - len(got))
    assert got == data[500_000:600_000]


def test_s3_range_reader_reads_short_at_the_expected_end_instead_of_fetching_past_it(s3_storage):
    bucket = s3_storage.buckets["source"]
    data = bytes(range(256)) * 4096
    s3_storage.write_bytes(f"s3://{bucket}/picture.bin", data)
    reader = S3RangeReader(s3_storage.client, bucket, "picture.bin", s3_storage.stat(f"s3://{bucket}/picture.bin"),
                           min_read=32 << 10)  # fmt: skip
    reader.expect(10_000)  # a picture's bytes end here: a 4 KiB demuxer buffer must not pull in 32 KiB more
    got = b""
    while len(got) < 10_000:
        got += reader.read(4096)
    assert got == data[:10_000] and reader.bytes_fetched == 10_000


def test_a_verified_index_copy_is_read_instead_of_the_recording_and_an_altered_one_is_not(s3_storage, footage, tmp_path):
    import av

    from vigil.media.containers import mp4_index_bytes
    from vigil.media.remux import concat_copies
    from vigil.store import layout
    from vigil.store.index_copy import lend_index, read_index, save_index

    recording = concat_copies(footage, tmp_path / "x2.mp4", copies=2)  # its index at the end, as recorders write it
    bucket = s3_storage.buckets["source"]
    uri = f"s3://{bucket}/cam/indexed.mp4"
    s3_storage.write_bytes(uri, recording.read_bytes())
    out = f"file://{tmp_path}/out"
    with s3_storage.open(uri) as handle:
        index_bytes = mp4_index_bytes(handle)
        sha256 = save_index(out, None, read_index(handle, index_bytes))
    index_size = index_bytes[1] - index_bytes[0]
    assert index_bytes[1] == recording.stat().st_size
    copy = tmp_path / "out" / layout.INDEXES / f"{sha256}.moov"
    assert copy.stat().st_size == index_size

    def opened(lend: bool) -> tuple[int, bool]:
        """Bytes fetched from the recording to open it, and whether the copy was handed over."""
        with s3_storage.open(uri) as handle:
            lent = lend_index(handle, out, None, index_bytes, sha256) if lend else False
            with av.open(handle) as container:
                assert container.streams.video[0].frames > 0
            return handle.bytes_fetched, lent

    (with_copy, lent), (without, _) = opened(lend=True), opened(lend=False)
    assert lent and without - with_copy >= index_size
    copy.write_bytes(copy.read_bytes()[::-1])  # anyone may write into the output store
    assert opened(lend=True) == (without, False), "an altered copy is never handed to FFmpeg"


def test_s3_range_reader_fetches_what_it_keeps_only_once(s3_storage):
    bucket = s3_storage.buckets["source"]
    data = bytes(range(256)) * 4096  # 1 MiB
    s3_storage.write_bytes(f"s3://{bucket}/pics.bin", data)
    info = s3_storage.stat(f"s3://{bucket}/pics.bin")
    for cache_bytes, second_pass_requests in ((1 << 20, 0), (64 << 10, 4)):
        reader = S3RangeReader(s3_storage.client, bucket, "pics.bin", info, min_read=32 << 10, cache_bytes=cache_bytes)
        for _ in range(2):  # two passes over the same four pictures, as appearance then review
            before = reader.requests
            for offset in (0, 300_000, 600_000, 900_000):
                reader.seek(offset)
                assert reader.read(1000) == data[offset : offset + 1000]
        assert reader.requests - before == second_pass_requests


class _CountingFile:
    """A file that counts the bytes read through it."""

    def __init__(self, path):
        self._file, self.bytes_read = open(path, "rb"), 0

    def readinto(self, buffer):
        count = self._file.readinto(buffer)
        self.bytes_read += count or 0
        return count

    def read(self, size=-1):
        data = self._file.read(size)
        self.bytes_read += len(data)
        return data

    def seek(self, offset, whence=0):
        return self._file.seek(offset, whence)

    def tell(self):
        return self._file.tell()


def _moov_at_end(footage, target):
    """The same pictures, remuxed with the MP4 index after the media data (what many recorders write)."""
    import av

    with av.open(str(footage)) as src, av.open(str(target), "w", format="mp4") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return target


@pytest.mark.parametrize("layout", ["as shipped", "index at the end"])
def test_probing_through_a_hashing_reader_reads_the_recording_once(footage, tmp_path, layout):
    import hashlib

    from vigil.media.probe import probe
    from vigil.store.readers import HashingReader

    path = footage if layout == "as shipped" else _moov_at_end(footage, tmp_path / "moov-last.mp4")
    counting = _CountingFile(path)
    reader = HashingReader(counting)
    described = probe(reader, str(path))
    assert reader.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert described.frame_count == 1394
    assert counting.bytes_read < 1.1 * path.stat().st_size, (counting.bytes_read, path.stat().st_size)
    if layout == "index at the end":  # the index read first is kept and hashed, not read again
        assert counting.bytes_read < path.stat().st_size + (64 << 10), (counting.bytes_read, path.stat().st_size)


def test_hashing_reader_hashes_in_file_order_whatever_the_reads(tmp_path):
    import hashlib
    import io
    import os

    from vigil.store.readers import HashingReader

    data = os.urandom(100_000)
    reader = HashingReader(io.BytesIO(data))
    reader.read(1000)
    reader.seek(-5000, io.SEEK_END)
    reader.read(5000)  # ahead of the frontier: not hashed yet
    reader.seek(500)
    reader.read(30_000)  # overlaps what was hashed, then moves the frontier on
    reader.seek(10)
    reader.read(10)  # behind the frontier: nothing to add
    assert reader.hexdigest() == hashlib.sha256(data).hexdigest()


class _CountingBytes(io.BytesIO):
    """In-memory bytes that count what is read through them."""

    bytes_read = 0

    def readinto(self, buffer):
        count = super().readinto(buffer)
        self.bytes_read += count
        return count

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data


@pytest.mark.parametrize(("keep_ahead", "expected_read"), [(0, 230_000), (15_000, 220_000), (1 << 20, 200_000)])
def test_hashing_reader_hashes_bytes_read_ahead_without_reading_them_again(keep_ahead, expected_read):
    import hashlib
    import os

    from vigil.store.readers import HashingReader

    data = os.urandom(200_000)
    counting = _CountingBytes(data)
    reader = HashingReader(counting, keep_ahead=keep_ahead)
    reader.seek(150_000)
    reader.read(20_000)  # an index in the middle, read first
    reader.seek(190_000)
    reader.read(10_000)  # and one at the end
    reader.seek(0)
    reader.read(100_000)  # the probe stops short of both
    assert reader.hexdigest() == hashlib.sha256(data).hexdigest()
    assert counting.bytes_read == expected_read  # kept bytes are hashed from memory
