"""A compiled model that belongs to the process that built it, for the direct CPU paths.

OpenVINO's inference threads do not survive a fork: in a forked child a request of the parent's
model, sync or async, never finishes, and destroying the parent's objects hangs or aborts
(measured). An ONNX Runtime session owns a thread pool too; it is rebuilt the same way rather
than relied on across a fork. So a process about to fork calls ``release``
(vigil.orchestration.worker does, after its warm-up), and the child builds the model again on its
first batch (OpenVINO from its blob cache: 0.16 s here). A child forked without that leaves the
parent's objects untouched, never used and never destroyed, and builds its own.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Generic, TypeVar

import numpy as np

from vigil.model.detections import Detections

Loaded = TypeVar("Loaded")
_INHERITED: list = []  # what a forked process got from its parent: kept alive, never touched
_ALIVE: "weakref.WeakSet[PerProcessModel]" = weakref.WeakSet()


def _fresh_locks_in_child() -> None:
    """A lock another thread held at the fork would stay held in the child forever."""
    for model in list(_ALIVE):
        model.lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


class PerProcessModel(Generic[Loaded]):
    """Subclasses say how to ``_load`` the runtime's objects and how to ``_run`` a batch on them.
    Loaded at construction, so a model that cannot be built fails there. Shards on threads of one
    process take turns (an OpenVINO infer request runs one inference at a time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._loaded: Loaded | None = self._load()
        self._pid = os.getpid()
        _ALIVE.add(self)

    def _load(self) -> Loaded:
        raise NotImplementedError

    def _run(self, loaded: Loaded, images: list[np.ndarray]) -> list[Detections]:
        raise NotImplementedError

    def release(self) -> None:
        """Drop the runtime's objects (before a fork); the next batch builds them again."""
        with self.lock:
            if self._pid == os.getpid():
                self._loaded = None

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        with self.lock:
            if self._pid != os.getpid():
                if self._loaded is not None:
                    _INHERITED.append(self._loaded)
                self._loaded, self._pid = None, os.getpid()
            if self._loaded is None:
                self._loaded = self._load()
            return self._run(self._loaded, images)
