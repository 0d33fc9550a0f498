"""What the operator allows a run to touch, read once from the deployment's environment.

The person who triggers a run chooses sources, output, model and connection in a form; the
operator, who controls the workers' environment, decides which of those choices are allowed.
Nothing here can be set from a trigger form:

``VIGIL_ALLOWED_BUCKETS``   buckets a run may read or write (``s3://``), comma-separated
``VIGIL_ALLOWED_ROOTS``     local folders a run may read or write (``file://``), comma-separated
``VIGIL_ALLOWED_CONN_IDS``  Airflow connections a trigger may name (``VIGIL_S3_CONN_ID`` always may)
``VIGIL_MODEL_DIRS``        folders or storage prefixes that weights other than the default may
                            come from (a ``.pt`` file is a pickle: loading it runs code)
``VIGIL_FILENAME_START``    regex with named groups Y, m, d, H, M, S that reads a recording's
                            wall-clock start from its file name (unset: no start from names)
``VIGIL_FILENAME_TZ``       the offset of those names' times, e.g. ``+02:00`` (default UTC)

Once either allow-list is set the policy is *restricted*: a scheme whose list is empty is then
refused altogether (setting only buckets forbids every local path). With neither set, any
location is allowed — the single-user CLI case, where the user is the operator.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from vigil.errors import ParameterError
from vigil.uri import is_within, normalise_uri, parse_uri


def _csv(name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())


def _as_uri(location: str) -> str:
    """A configured location as a normalised URI: plain absolute paths become file:// URIs."""
    if "://" not in location:
        if not location.startswith("/"):
            raise ParameterError(f"operator setting {location!r} must be an absolute path or a storage URI")
        location = "file://" + location
    return normalise_uri(location)


@dataclass(frozen=True)
class OperatorPolicy:
    """The deployment's limits on what a run may touch (see the module docstring)."""

    buckets: frozenset[str] = frozenset()
    roots: tuple[str, ...] = ()  # file:// URIs
    conn_ids: frozenset[str] = frozenset()
    model_dirs: tuple[str, ...] = ()  # file:// or s3:// URIs
    filename_start: str | None = None  # a regex, see the module docstring
    filename_tz: str = "+00:00"

    @classmethod
    def from_environment(cls) -> "OperatorPolicy":
        conn_ids = set(_csv("VIGIL_ALLOWED_CONN_IDS"))
        if os.environ.get("VIGIL_S3_CONN_ID"):
            conn_ids.add(os.environ["VIGIL_S3_CONN_ID"])
        return cls(
            buckets=frozenset(_csv("VIGIL_ALLOWED_BUCKETS")),
            roots=tuple(_as_uri(r) for r in _csv("VIGIL_ALLOWED_ROOTS")),
            conn_ids=frozenset(conn_ids),
            model_dirs=tuple(_as_uri(d) for d in _csv("VIGIL_MODEL_DIRS")),
            filename_start=os.environ.get("VIGIL_FILENAME_START") or None,
            filename_tz=os.environ.get("VIGIL_FILENAME_TZ") or "+00:00",
        )

    @property
    def restricted(self) -> bool:
        return bool(self.buckets or self.roots)

    def check_location(self, uri: str, role: str) -> None:
        """Refuse a source, output or model URI outside the allowed buckets and local roots."""
        parsed = parse_uri(uri)
        if not self.restricted:
            return
        if parsed.scheme == "s3":
            if parsed.bucket not in self.buckets:
                allowed = ", ".join(sorted(self.buckets)) or "none"
                raise ParameterError(
                    f"{role} {uri!r}: bucket {parsed.bucket!r} is not in VIGIL_ALLOWED_BUCKETS ({allowed}); "
                    "use an allowed bucket or ask the operator to add it"
                )
            return
        # A local path counts where it really leads: a symlink out of an allowed root is outside.
        real = "file://" + os.path.realpath(parsed.key)
        if not any(is_within(real, "file://" + os.path.realpath(parse_uri(root).key)) for root in self.roots):
            allowed = ", ".join(self.roots) or "none"
            raise ParameterError(
                f"{role} {uri!r} is not under VIGIL_ALLOWED_ROOTS ({allowed}); "
                "use an allowed folder or ask the operator to add it"
            )

    def check_request(self, request) -> None:
        """Every location a run touches (sources, output and a model given as a URI) is allowed."""
        for uri in request.sources:
            self.check_location(uri, "source")
        self.check_location(request.out, "output")
        if "://" in request.params.model:
            self.check_location(request.params.model, "model")

    def check_trigger(self, request) -> None:
        """What only the operator may choose, checked where a trigger form becomes a request."""
        from vigil.config import DEFAULT_MODEL

        self.check_conn_id(request.source_conn_id)
        self.check_conn_id(request.out_conn_id)
        self.check_model(request.params.model, DEFAULT_MODEL)

    def check_conn_id(self, conn_id: str | None) -> None:
        """A trigger may only name connections the operator listed (or none: the AWS environment)."""
        if conn_id and conn_id not in self.conn_ids:
            allowed = ", ".join(sorted(self.conn_ids)) or "none"
            raise ParameterError(
                f"connection {conn_id!r} is not in VIGIL_ALLOWED_CONN_IDS ({allowed}); "
                "leave it empty or ask the operator to allow it"
            )

    def check_model(self, model: str, default: str) -> None:
        """Weights other than the default only from an operator's model location."""
        if model == default:
            return
        uri = model if "://" in model else "file://" + posixpath.normpath(os.path.abspath(model))
        if parse_uri(uri).scheme == "file":
            uri = "file://" + os.path.realpath(parse_uri(uri).key)
        for location in self.model_dirs:
            if parse_uri(location).scheme == "file":
                location = "file://" + os.path.realpath(parse_uri(location).key)
            if is_within(normalise_uri(uri), location) and normalise_uri(uri) != location:
                return
        allowed = ", ".join(self.model_dirs) or "none configured"
        raise ParameterError(
            f"model {model!r} is not in an operator model location (VIGIL_MODEL_DIRS: {allowed}); weights "
            "run code when loaded, so only the default model or weights the operator placed there are used"
        )


def operator_policy() -> OperatorPolicy:
    """The policy of this process's environment (read each time: tests and workers may change it)."""
    return OperatorPolicy.from_environment()
