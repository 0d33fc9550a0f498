"""The trigger form of a processing run, and its validation into a ``RunRequest``.

Every processing parameter is declared once (``vigil.config``); the form's typed, bounded
``Param`` fields are built from those declarations, and a trigger is validated back through them
and the operator's policy. Imported by the DAG files: standard library, ``airflow.sdk`` and
``vigil.config`` only at module level.
"""

from __future__ import annotations

import os

from airflow.sdk import Param

from vigil.config import ProcessParams, declarations

_URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.\-]{1,62}(/.*)?|file:///.*)$"


_JSON_TYPES = {float: "number", int: "integer", str: "string", bool: "boolean"}


def processing_form(cls=ProcessParams) -> dict[str, Param]:
    """One typed, bounded ``Param`` per declared processing parameter, from its declaration."""
    form = {}
    for d in declarations(cls):
        meta, kind = d.meta, _JSON_TYPES[d.kind]
        schema = {"type": ["null", kind] if d.optional else kind, "title": meta["title"], "description": meta["help"]}
        bounds = {"minimum": None if meta["exclusive_minimum"] else meta["minimum"], "maximum": meta["maximum"],
                  "exclusiveMinimum": meta["minimum"] if meta["exclusive_minimum"] else None,
                  "multipleOf": meta["multiple_of"], "pattern": meta["pattern"],
                  "enum": list(meta["choices"]) if meta["choices"] else None}  # fmt: skip
        form[d.name] = Param(d.default, **schema, **{k: v for k, v in bounds.items() if v is not None})
    return form


def process_params(sources: list[str] | None = None, out: str | None = None) -> dict:
    """The trigger form of a processing run: typed, bounded, validated by JSON schema."""
    return {
        "sources": Param(
            sources or [],
            type="array",
            minItems=1,
            items={"type": "string", "pattern": _URI_PATTERN},
            title="Recordings",
            description="Recording URIs or prefixes holding recordings: s3://bucket/drop-2024-03/ or file:///data/drop/",
        ),
        "out": Param(
            out if out is not None else os.environ.get("VIGIL_OUTPUT_URI", ""),
            type="string",
            pattern=_URI_PATTERN,
            title="Output location",
            description="Where Parquet and manifests go; never inside a source prefix",
        ),
        **processing_form(),
        "recording_start": Param(
            None, type=["null", "string"], format="date-time", title="Wall-clock time of the first frame (UTC offset required)"
        ),
        "expected_sha256": Param(
            {},
            type="object",
            additionalProperties={"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            title="Expected SHA-256 per recording URI",
            description="A recording whose hash differs is not analysed (a <name>.sha256 sidecar is also honoured)",
        ),
        "force": Param(False, type="boolean", title="Re-analyse shards whose output already exists"),
        "blur_faces": Param(False, type="boolean", title="Blur faces in the review pictures (never in the data)"),
        "clips": Param(False, type="boolean", title="Cut a lossless clip for every presence interval and posture event"),
        "conn_id": Param(
            os.environ.get("VIGIL_S3_CONN_ID") or None,
            type=["null", "string"],
            title="Airflow connection for s3:// (empty: the AWS environment)",
        ),
    }


def run_request_from(params: dict, conf: dict | None, declared: set[str]):
    """Validate a run's parameters into a RunRequest; refuse unknown keys (a typo would silently
    fall back to a default and change the evidence)."""
    from vigil.config import RunRequest
    from vigil.errors import ParameterError

    unknown = sorted(set(conf or {}) - declared)
    if unknown:
        raise ParameterError(f"unknown trigger parameters {unknown}; the known ones are {sorted(declared)}")
    request = RunRequest(
        sources=tuple(params["sources"]),
        out=params["out"],
        params=ProcessParams.from_dict({d.name: params[d.name] for d in declarations(ProcessParams) if d.name in params}),
        source_conn_id=params.get("conn_id"),
        out_conn_id=params.get("conn_id"),
        recording_start=params.get("recording_start"),
        expected_sha256=dict(params.get("expected_sha256") or {}),
        force=bool(params.get("force")),
        blur_faces=bool(params.get("blur_faces")),
        clips=bool(params.get("clips")),
    )
    from vigil.operator import operator_policy

    operator_policy().check_trigger(request)  # connection and weights: the operator's choice, not the form's
    return request
