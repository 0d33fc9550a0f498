"""Expected SHA-256s given with a run, matched to the recordings it found by one canonical key.

The investigator writes a recording's URI as they know it (``cam 1.mp4``, through a symlinked
folder, with a doubled slash); listings spell it their own way (percent-encoded, S3 keys quoted).
Both sides are reduced to the same key here, and a hash that matches no recording stops the run
before anything is analysed: a silently unused hash would look like a checked one.
"""

from __future__ import annotations

import os

from vigil.config import RunRequest
from vigil.errors import ParameterError
from vigil.store.storage import ObjectInfo
from vigil.uri import normalise_uri, parse_uri


def match_key(uri: str) -> str:
    """One spelling per object: the normalised URI, and for a local file the path it really is."""
    parsed = parse_uri(uri)
    if parsed.scheme == "file":
        return normalise_uri("file://" + os.path.realpath(parsed.key))
    return normalise_uri(uri)


def expected_for(request: RunRequest, uri: str) -> str | None:
    """The SHA-256 the request expects for the recording at ``uri``, if it names one."""
    wanted = match_key(uri)
    for given, digest in request.expected_sha256.items():
        if match_key(given) == wanted:
            return digest.lower()
    return None


def check_all_matched(request: RunRequest, recordings: list[ObjectInfo]) -> None:
    """Refuse the run when an expected hash names no recording that was found."""
    found = {match_key(r.uri) for r in recordings}
    unmatched = sorted(uri for uri in request.expected_sha256 if match_key(uri) not in found)
    if unmatched:
        raise ParameterError(
            f"expected SHA-256 given for {unmatched}, but no such recording was found under the sources "
            f"({', '.join(request.sources)}); correct the URI (as listed, e.g. by `vigil query recordings`) "
            "or the sources, then trigger again — nothing was analysed"
        )
