"""``s3://`` storage: S3 or any S3-compatible store (MinIO, Ceph, moto) through boto3."""

from __future__ import annotations

import os
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
        from vigil.store.s3_reader import S3RangeReader

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
