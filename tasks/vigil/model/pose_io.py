"""The model's input and output in numpy, shared by the direct OpenVINO and ONNX Runtime paths:
letterbox a BGR frame to the model's shape, and turn one image's raw output into people.

Letterbox geometry, suppression and rescaling follow Ultralytics exactly (``LetterBox``,
``non_max_suppression``, ``scale_boxes``/``scale_coords`` of the pinned version), so the boxes
are those of ``YOLO.predict`` up to float rounding; tests/test_detector.py compares them.
"""

from __future__ import annotations

import numpy as np

from vigil.model.detections import Detections
from vigil.model.keypoints import KEYPOINTS

IOU_THRESHOLD = 0.7  # Ultralytics' default for predict
MAX_DETECTIONS = 300
MAX_CANDIDATES = 30000
PAD_VALUE = 114


def letterbox(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``shape`` and centred on grey (114) padding: Ultralytics' LetterBox."""
    import cv2

    height, width = image.shape[:2]
    (new_h, new_w), (top, bottom, left, right) = _geometry((height, width), shape)
    if (new_h, new_w) != (height, width):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return np.ascontiguousarray(image)


def _geometry(source: tuple[int, int], shape: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    ratio = min(shape[0] / source[0], shape[1] / source[1])
    new_w, new_h = max(round(source[1] * ratio), 1), max(round(source[0] * ratio), 1)
    dw, dh = (shape[1] - new_w) / 2, (shape[0] - new_h) / 2
    return (new_h, new_w), (round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1))


def postprocess(output: np.ndarray, shape: tuple[int, int], source: tuple[int, int], conf: float) -> Detections:
    """One image's raw output ``(56, candidates)`` -> people in source pixels: confidence filter,
    class-wise NMS at IoU 0.7 (one class here), letterbox undone, clipped to the frame."""
    scores = output[4]
    keep = np.flatnonzero(scores > conf)
    if keep.size == 0:
        return Detections.empty()
    rows = output[:, keep].T.astype(np.float32)  # (n, 56)
    if len(rows) > MAX_CANDIDATES:
        rows = rows[np.argsort(-rows[:, 4], kind="stable")[:MAX_CANDIDATES]]
    xy, wh = rows[:, :2], rows[:, 2:4] / 2
    boxes = np.concatenate([xy - wh, xy + wh], axis=1)
    chosen = nms(boxes, rows[:, 4], IOU_THRESHOLD)[:MAX_DETECTIONS]
    boxes, scores = boxes[chosen], rows[chosen, 4]
    keypoints = rows[chosen, 5:].reshape(-1, KEYPOINTS, 3).copy()

    (new_h, new_w), _ = _geometry(source, shape)
    gain_x, gain_y = new_w / source[1], new_h / source[0]
    pad_x, pad_y = round((shape[1] - new_w) / 2 - 0.1), round((shape[0] - new_h) / 2 - 0.1)
    height, width = source
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - pad_x) / gain_x).clip(0, width)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - pad_y) / gain_y).clip(0, height)
    keypoints[..., 0] = ((keypoints[..., 0] - pad_x) / gain_x).clip(0, width)
    keypoints[..., 1] = ((keypoints[..., 1] - pad_y) / gain_y).clip(0, height)
    order = np.argsort(-scores, kind="stable")  # highest score first: det_index is stable
    return Detections(boxes[order].astype(np.float32), scores[order].astype(np.float32), keypoints[order])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, best first (torchvision.ops.nms: a box is dropped
    when its IoU with a kept, higher-scoring box is above ``threshold``). The IoU matrix is one
    numpy operation; the greedy pass takes one kept box per step and drops all it suppresses at once."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    top_left = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty boxes: IoU nan, never suppresses
        iou = inter / (area[:, None] + area[None, :] - inter)
    kept, remaining = [], np.arange(len(boxes))
    while remaining.size:
        best, remaining = remaining[0], remaining[1:]
        kept.append(best)
        remaining = remaining[~(iou[best, remaining] > threshold)]
    return order[np.asarray(kept, dtype=np.int64)]
