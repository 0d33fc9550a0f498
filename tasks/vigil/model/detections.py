"""The result of pose detection on one frame. Never imports torch or ultralytics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vigil.model.keypoints import KEYPOINTS  # 17, COCO order


@dataclass(frozen=True)
class Detections:
    """People found in one frame, in source-frame pixel coordinates.

    Attributes:
        xyxy: ``(n, 4) float32`` boxes as x1, y1, x2, y2.
        confidence: ``(n,) float32`` person scores.
        keypoints: ``(n, 17, 3) float32`` x, y, confidence per COCO keypoint.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    keypoints: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        _check_shape("xyxy", self.xyxy, (n, 4))
        _check_shape("confidence", self.confidence, (n,))
        _check_shape("keypoints", self.keypoints, (n, KEYPOINTS, 3))

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, KEYPOINTS, 3), np.float32)
        )

    def is_empty(self) -> bool:
        return len(self) == 0

    @classmethod
    def from_ultralytics(cls, result) -> "Detections":
        """From one ``ultralytics.engine.results.Results`` of a pose model (duck-typed)."""
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return cls.empty()
        xyxy = _numpy(boxes.xyxy).astype(np.float32).reshape(-1, 4)
        confidence = _numpy(boxes.conf).astype(np.float32).reshape(-1)
        if result.keypoints is not None and len(result.keypoints.data):
            keypoints = _numpy(result.keypoints.data).astype(np.float32).reshape(-1, KEYPOINTS, 3)
        else:
            keypoints = np.zeros((len(xyxy), KEYPOINTS, 3), np.float32)
        # Highest score first, so det_index is stable and meaningful.
        order = np.argsort(-confidence, kind="stable")
        return cls(xyxy[order], confidence[order], keypoints[order])


def _numpy(value) -> np.ndarray:
    return value.cpu().numpy() if hasattr(value, "cpu") else np.asarray(value)


def _check_shape(name: str, array: np.ndarray, expected: tuple[int, ...]) -> None:
    if array.shape != expected:
        raise ValueError(f"{name} must be an array with shape {expected}, but got shape {array.shape}")
