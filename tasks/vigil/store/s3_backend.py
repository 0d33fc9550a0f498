"""``s3://`` storage: S3 or any S3-compatible store (MinIO, Ceph, moto) through boto3."""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timezone
from typing import BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from vigil.errors import ObjectNotFound, ParameterError, SourceChanged, StorageError
from vigil.store.storage import ObjectInfo
from vigil.uri import normalise_uri, parse_uri, s3_uri

# What the S3 client itself raises. Anything else is a bug in vigil and must surface as one, not be
# turned into a retryable StorageError that burns the task's retries.
S3_ERRORS = (BotoCoreError, ClientError)


@dataclass(frozen=True)
class S3Settings:
    """Where an S3-compatible endpoint is and how to sign for it. ``repr`` hides the secrets."""

    endpoint_url: str | None = None
    region_name: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"S3Settings(endpoint_url={self.endpoint_url!r}, region_name={self.region_name!r})"

    @classmethod
    def from_conn_id(cls, conn_id: str | None) -> "S3Settings":
        """From an Airflow connection (conn_type aws), or the AWS environment when None."""
        if not conn_id:
            return cls(endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
        try:
            from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        except ImportError as exc:  # pragma: no cover - airflow is a dependency
            raise ParameterError(f"S3 connection id {conn_id!r} given but Airflow is not installed") from exc
        from airflow.exceptions import AirflowException

        try:
            hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
            config = hook.conn_config
            creds = hook.get_credentials()
        except (AirflowException, *S3_ERRORS) as exc:
            raise ParameterError(
                f"cannot read Airflow connection {conn_id!r}: {type(exc).__name__}; define it in Airflow "
                f"or as AIRFLOW_CONN_{conn_id.upper()}"
            ) from exc
        return cls(
            endpoint_url=config.get_service_endpoint_url("s3"),
            region_name=config.region_name,
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            session_token=creds.token,
        )


class S3Storage:
    """S3 or any S3-compatible store (MinIO, Ceph, moto) through boto3."""

    def __init__(self, settings: S3Settings):
        import boto3
        from botocore.config import Config

        self.settings = settings
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region_name or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            aws_session_token=settings.session_token,
            config=Config(
                retries={"max_attempts": 8, "mode": "adaptive"},
                # boto3 >= 1.36 sends CRC checksums that some S3-compatible servers reject.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=16,
            ),
        )

    @classmethod
    def from_conn_id(cls, conn_id: str | None) -> "S3Storage":
        return cls(S3Settings.from_conn_id(conn_id))

    @property
    def client(self):
        return self._client

    def list(self, prefix_uri: str) -> list[ObjectInfo]:
        parsed = parse_uri(prefix_uri)
        found = []
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=parsed.bucket, Prefix=parsed.key):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    # "s3://b/rec" must not match "s3://b/recordings-old/x": a prefix is a folder
                    # unless it names one object exactly.
                    if parsed.key and key != parsed.key and not parsed.key.endswith("/"):
                        if not key.startswith(parsed.key + "/"):
                            continue
                    found.append(
                        ObjectInfo(
                            uri=s3_uri(parsed.bucket, key),  # percent-encoded: parses back to this key
                            size=int(item["Size"]),
                            etag=item.get("ETag", "").strip('"') or None,
                            last_modified=_iso(item.get("LastModified")),
                        )
                    )
        except S3_ERRORS as exc:
            raise _translate(exc, prefix_uri) from exc
        return found

    def stat(self, uri: str) -> ObjectInfo:
        parsed = parse_uri(uri)
        try:
            head = self._client.head_object(Bucket=parsed.bucket, Key=parsed.key)
        except S3_ERRORS as exc:
            raise _translate(exc, uri) from exc
        return ObjectInfo(
            uri=normalise_uri(uri),
            size=int(head["ContentLength"]),
            etag=head.get("ETag", "").strip('"') or None,
            last_modified=_iso(head.get("LastModified")),
            version_id=head.get("VersionId"),
        )

    def open(self, uri: str, etag: str | None = None, *, cache_bytes: int = 16 << 20) -> BinaryIO:
        """A ranged reader; with ``etag`` every read is pinned to that version of the object.
        ``cache_bytes``: how much of what it fetched it keeps for reading again."""
        info = self.stat(uri)
        if etag and info.etag != etag:
            raise SourceChanged(f"{uri}: the object changed since it was planned (ETag {etag} -> {info.etag}); "
                                "trigger the run again")
        parsed = parse_uri(uri)
        return S3RangeReader(self._client, parsed.bucket, parsed.key, info, cache_bytes=cache_bytes)

    def read_bytes(self, uri: str) -> bytes:
        parsed = parse_uri(uri)
        try:
            return self._client.get_object(Bucket=parsed.bucket, Key=parsed.key)["Body"].read()
        except S3_ERRORS as exc:
            raise _translate(exc, uri) from exc

    def write_bytes(self, uri: str, data: bytes, *, if_absent: bool = False) -> bool:
        """One PUT: S3 makes a new object visible only once it is complete."""
        parsed = parse_uri(uri)
        kwargs = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self._client.put_object(Bucket=parsed.bucket, Key=parsed.key, Body=data, **kwargs)
        except S3_ERRORS as exc:
            if if_absent and _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise _translate(exc, uri) from exc
        return True

    def delete(self, uri: str) -> None:
        parsed = parse_uri(uri)
        try:
            self._client.delete_object(Bucket=parsed.bucket, Key=parsed.key)
        except S3_ERRORS as exc:
            raise _translate(exc, uri) from exc


class S3RangeReader(io.RawIOBase):
    """A seekable read-only file over ranged GETs, each sized to how the file is being read.

    A read after a jump (a container index, the keyframe of one review picture) fetches a small
    range, ``min_read``; reads that carry on where the last GET ended double the next, up to
    ``max_read``, so a shard streaming its part pays few requests and little overshoot. ``expect``
    says where the caller's byte range ends (a shard's, from its plan): GETs stop there unless a
    read itself asks for more, and reads past it start small again (the decoder's few packets of
    look-ahead). Fetched ranges are kept, least recently used dropped first, up to
    ``cache_bytes``: a caller that reads the same pictures twice (review pictures after appearance
    descriptors) fetches them once. Every GET is pinned to the ETag seen when the object was opened
    (``IfMatch``), so an object replaced mid-read fails loudly instead of mixing two versions.
    ``bytes_fetched`` and ``requests`` count what came over the wire.
    """

    def __init__(self, client, bucket: str, key: str, info: ObjectInfo, min_read: int = 32 << 10,
                 max_read: int = 4 << 20, cache_bytes: int = 16 << 20):  # fmt: skip
        super().__init__()
        self._client, self._bucket, self._key, self.info = client, bucket, key, info
        self._size = info.size
        self._pos = 0
        self._min_read, self._max_read = min_read, max(min_read, max_read)
        self._next_read = min_read
        self._streak = 0  # GETs in a row that each began where the last ended
        self._fetched_to = -1  # where the last GET ended: a read from there is sequential
        self._expected_end = 0
        self._range_ends: set[int] = set()  # where the ranges given to fetch_ranges end
        self._cache_bytes = cache_bytes
        self._cached = 0
        self._spans: OrderedDict[int, bytes] = OrderedDict()  # start offset -> bytes, least recent first
        self._lock = threading.Lock()
        self.bytes_fetched = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def expect(self, end: int) -> None:
        """The caller needs bytes up to ``end`` (exclusive) from where it reads next: read ahead no further."""
        self._expected_end = min(max(0, end), self._size)

    def fetch_ranges(self, ranges) -> None:
        """Fetch each ``(start, end)`` range not already kept, in one GET of exactly its size (the
        bytes a container is opened with: its start and its index); a read stops at their ends."""
        merged: list[list[int]] = []
        for start, end in sorted((max(0, a), min(b, self._size)) for a, b in ranges if b > a):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            self._range_ends.add(end)
            with self._lock:
                kept = any(at <= start and end <= at + len(data) for at, data in self._spans.items())
            if not kept and start < end:
                self._get(start, end - start)

    def keep(self, start: int, data: bytes) -> None:
        """Serve ``data`` as the bytes from ``start`` without fetching them (a verified copy of the
        recording's index); a read stops at their end."""
        with self._lock:
            self._cached += len(data) - len(self._spans.pop(start, b""))
            self._spans[start] = bytes(data)
            self._range_ends.add(start + len(data))

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._pos < self._size:
            if written and (self._pos == self._expected_end or self._pos in self._range_ends):
                break  # the caller's range ends here: a short read, not a GET for bytes it may never need
            start, data = self._span_at(self._pos, len(view) - written)
            chunk = data[self._pos - start : self._pos - start + len(view) - written]
            if not chunk:
                break
            view[written : written + len(chunk)] = chunk
            written += len(chunk)
            self._pos += len(chunk)
        return written

    def _span_at(self, pos: int, wanted: int) -> tuple[int, bytes]:
        with self._lock:
            for start, data in reversed(self._spans.items()):
                if start <= pos < start + len(data):
                    self._spans.move_to_end(start)
                    return start, data
            sequential = pos == self._fetched_to and pos != self._expected_end
            # Sizes double from the second GET that carries on: a picture's keyframe is often read
            # whole by the first, and the few frames after it need little more.
            self._streak = self._streak + 1 if sequential else 0
            self._next_read = min(self._min_read << min(max(0, self._streak - 1), 16), self._max_read)
            length = max(wanted, self._next_read)
            if pos < self._expected_end:  # no further than the caller's range, unless the read asks for it
                length = max(wanted, min(length, self._expected_end - pos))
        return self._get(pos, length)

    def _get(self, pos: int, length: int) -> tuple[int, bytes]:
        end = min(self._size, pos + length) - 1
        kwargs = {"IfMatch": f'"{self.info.etag}"'} if self.info.etag else {}
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={pos}-{end}", **kwargs)
            data = body["Body"].read()
        except S3_ERRORS as exc:
            raise _translate(exc, s3_uri(self._bucket, self._key)) from exc
        with self._lock:
            self.bytes_fetched += len(data)
            self.requests += 1
            self._fetched_to = pos + len(data)
            self._cached += len(data) - len(self._spans.pop(pos, b""))
            self._spans[pos] = data
            while self._cached > self._cache_bytes and len(self._spans) > 1:
                self._cached -= len(self._spans.popitem(last=False)[1])
        return pos, data


def _iso(value) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _translate(exc: BotoCoreError | ClientError, uri: str) -> Exception:
    """Map a botocore error to vigil's tree: missing objects are final, the rest may be retried."""
    code = _error_code(exc)
    if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
        return ObjectNotFound(f"{uri}: no such object ({code})")
    if code in ("PreconditionFailed", "412"):
        return SourceChanged(f"{uri}: the object changed while it was being read ({code}); trigger the run again")
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return ParameterError(f"{uri}: access denied ({code}); check the connection's credentials and policy")
    return StorageError(f"{uri}: {type(exc).__name__}: {code or exc}")
