"""Every error vigil raises on purpose, and whether a retry can help.

    VigilError
    ├── InputError              retryable = False: the input or the request is wrong
    │   ├── ParameterError      a trigger/CLI parameter is invalid (also a ValueError)
    │   ├── RecordingError      a recording cannot be read or decoded
    │   ├── ObjectNotFound      an object that should exist does not (also a FileNotFoundError)
    │   └── IntegrityError      a hash does not match what was expected
    │       ├── SourceChanged   a recording changed since it was planned (hashed)
    │       └── ManifestError   a manifest is unreadable or has been altered
    ├── TransientError          retryable = True: the world may be better in a moment
    │   ├── StorageError        object storage failed (network, throttling, 5xx)
    │   └── InferenceError      the inference runtime did not answer in time
    └── RecordingsFailed        some recordings of a run failed; the others were finalized

Third-party exceptions are translated at the boundary (``raise StorageError(...) from exc``), so
callers (the DAG, the CLI) only need to look at ``retryable``.
"""

from __future__ import annotations


class VigilError(Exception):
    """Base of every error vigil raises on purpose."""

    retryable: bool = False


class InputError(VigilError):
    """The input or the request is wrong: retrying the same thing fails the same way."""

    retryable = False


class ParameterError(InputError, ValueError):
    """A parameter given to vigil (trigger form, CLI flag, config) is invalid."""


class RecordingError(InputError):
    """A recording cannot be opened, probed or decoded; the message names the recording."""

    def __init__(self, uri: str, reason: str):
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason


class IntegrityError(InputError):
    """A file's SHA-256 does not match the hash it must have."""


class TransientError(VigilError):
    """A failure that may go away on a retry (network, throttling, a busy server)."""

    retryable = True


class StorageError(TransientError):
    """Object storage failed in a way that may be temporary."""


class InferenceError(TransientError):
    """The inference runtime did not finish a frame in time (a stuck infer request)."""


class ObjectNotFound(InputError, FileNotFoundError):
    """An object that should exist does not (deleted, or never there)."""


class SourceChanged(IntegrityError):
    """A recording is no longer the version that was hashed at planning (size or ETag differ)."""


class ShardCommitBroken(IntegrityError):
    """A shard's commit marker cannot be trusted: unreadable, or a file it names is missing or altered."""


class ManifestError(IntegrityError):
    """A manifest is unreadable or has been altered."""


class RecordingsFailed(VigilError):
    """Some recordings of a run could not be processed; the others were finalized.

    Not retryable as a whole: the failures are named, each with what to do about it.
    """

    def __init__(self, problems: list[str], summaries: list[dict]):
        super().__init__(f"{len(problems)} recording(s) failed:\n  " + "\n  ".join(problems))
        self.problems, self.summaries = problems, summaries
