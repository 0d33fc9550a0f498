"""Storage URIs in one leaf module: parsing, joining, containment.

``s3://bucket/key`` and ``file:///absolute/path`` are the only schemes; every other module that
needs to take a URI apart or build one comes here (config, the storage backends, the UI).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from vigil.errors import ParameterError

SCHEMES = ("file", "s3")
# Characters left readable in a URI path; everything else (``%``, ``#``, ``?``, spaces, non-ASCII)
# is percent-encoded, so that parse_uri(uri_of(key)) gives back exactly the key. Keeps Hive
# partition names ("recording_id=…") readable and equal to join_uri()'s output.
SAFE = "/=+@,:;-._~"


@dataclass(frozen=True)
class ParsedUri:
    scheme: str
    bucket: str  # empty for file://
    key: str  # for file:// the absolute path


def parse_uri(uri: str) -> ParsedUri:
    """Split and validate a storage URI; raise ParameterError saying what a valid one looks like."""
    if not isinstance(uri, str) or not uri:
        raise ParameterError(f"expected a storage URI (s3://bucket/key or file:///path), got {uri!r}")
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        hint = " (write local paths as file:///absolute/path)" if not parts.scheme else ""
        raise ParameterError(f"unsupported URI scheme in {uri!r}: use s3:// or file://{hint}")
    if parts.query or parts.fragment:
        raise ParameterError(f"storage URIs take no query or fragment: {uri!r}")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ParameterError(f"file URIs must be file:///absolute/path, got {uri!r}")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ParameterError(f"file URIs must hold an absolute path, got {uri!r}")
        _refuse_dot_segments(uri, path)
        # The filesystem reads "a//b" and "a/b/" as "a/b": so does every comparison here.
        path = re.sub(r"/{2,}", "/", path)
        return ParsedUri("file", "", path.rstrip("/") or "/")
    if not parts.netloc:
        raise ParameterError(f"s3 URIs must name a bucket: s3://bucket/key, got {uri!r}")
    # Exactly one "/" separates bucket and key: a key may itself begin with "/" (a different
    # object from the same key without it), so only the separator is dropped.
    key = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    _refuse_dot_segments(uri, key)
    return ParsedUri("s3", parts.netloc, key)


def _refuse_dot_segments(uri: str, path: str) -> None:
    if any(segment in (".", "..") for segment in path.split("/")):
        raise ParameterError(f"'.' and '..' segments are not allowed in URIs: {uri!r}")


def join_uri(base: str, *parts: str) -> str:
    """``join_uri("s3://b/out", "detections", "x.parquet")`` -> ``s3://b/out/detections/x.parquet``."""
    out = base.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def file_uri(path: str | os.PathLike) -> str:
    """The file:// URI of a local path (made absolute; symlinks are kept, not resolved, so a
    listing's URIs stay under the folder that was listed)."""
    return "file://" + quote(posixpath.normpath(os.path.abspath(Path(path))), safe=SAFE)


def s3_uri(bucket: str, key: str) -> str:
    """The URI of an S3 object, its key percent-encoded so that parse_uri() returns it unchanged."""
    return f"s3://{bucket}/" + quote(key, safe=SAFE)


def normalise_uri(uri: str) -> str:
    """The one canonical spelling of a storage URI: the same object always gives the same string
    (``file:///a//b/`` and ``file:///a/b``; ``s3://b/cam 1.mp4`` and ``s3://b/cam%201.mp4``)."""
    parsed = parse_uri(uri)
    if parsed.scheme == "file":
        return "file://" + quote(parsed.key, safe=SAFE)
    return s3_uri(parsed.bucket, parsed.key)


def is_within(uri: str, prefix_uri: str) -> bool:
    """Whether ``uri`` lies at or under ``prefix_uri`` (same scheme, bucket and path prefix)."""
    a, b = parse_uri(uri), parse_uri(prefix_uri)
    if (a.scheme, a.bucket) != (b.scheme, b.bucket):
        return False
    prefix = b.key.rstrip("/")
    return prefix == "" or a.key == prefix or a.key.startswith(prefix + "/")
