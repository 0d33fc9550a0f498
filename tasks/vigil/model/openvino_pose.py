"""The OpenVINO pose model run directly, for ``runtime=openvino`` and ``openvino-int8``.

Ultralytics' predictor converts every frame in Python (BGR->RGB, HWC->CHW, uint8->float, /255)
and suppresses in torch, one image after another; on two cores that cost more than the model.
Here the conversion is compiled into the model (OpenVINO's PrePostProcessor: the input is the
letterboxed uint8 BGR frame, NHWC), a small pool of infer requests overlaps letterboxing and
post-processing with inference, and suppression and rescaling are numpy over all candidates.

Letterbox geometry, suppression and rescaling follow Ultralytics exactly (``LetterBox``,
``non_max_suppression``, ``scale_boxes``/``scale_coords`` of the pinned version), so the boxes
are those of ``YOLO.predict`` up to float rounding; tests/test_detector.py compares them.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Callable

import numpy as np

from vigil.errors import InferenceError
from vigil.model.detections import Detections
from vigil.model.keypoints import KEYPOINTS

IOU_THRESHOLD = 0.7  # Ultralytics' default for predict
MAX_DETECTIONS = 300
MAX_CANDIDATES = 30000
PAD_VALUE = 114
# What the compiled model takes: recorded in the compiled-model cache key (OpenVINO hashes the
# whole graph, pre-processing included, into its CACHE_DIR blob names).
INPUT_VARIANT = "u8-bgr-nhwc"
WAIT_MS = 120_000  # an infer request that has not finished by then never will: say so, do not hang


def compiled_pose_model(ir_dir: Path, shape: tuple[int, int], cache_dir: Path):
    """The IR in ``ir_dir`` reshaped to one ``shape`` (static: OpenVINO's AMX INT8 kernels fail on
    dynamic shapes), with uint8 BGR NHWC input converted to float RGB NCHW / 255 in the graph,
    compiled for throughput on the CPU. The compiled blob is cached under ``cache_dir``."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    core = ov.Core()
    core.set_property({"CACHE_DIR": str(cache_dir)})
    model = core.read_model(next(ir_dir.glob("*.xml")))
    model.reshape([1, 3, *shape])
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
    return core.compile_model(ppp.build(), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})


_INHERITED: list = []  # infer requests a forked process got from its parent (see OpenVINOPose)
_LOADED: "weakref.WeakSet[OpenVINOPose]" = weakref.WeakSet()


def _fresh_locks_in_child() -> None:
    """A lock another thread held at the fork would stay held in the child forever."""
    for pose in list(_LOADED):
        pose.lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


class OpenVINOPose:
    """Letterbox, infer and suppress a list of same-size BGR frames, with one infer request per
    OpenVINO stream: while one frame runs, the next is letterboxed and the previous suppressed.
    One loaded model serves every shard of a worker process; shards on threads of that process
    take turns (an infer request runs one inference at a time: a second start raises "busy").

    OpenVINO's inference threads do not survive a fork: in a forked child a request of the
    parent's model, sync or async, never finishes, and destroying the parent's objects hangs or
    aborts. So a process about to fork calls ``release`` (vigil.orchestration.worker does, after
    its warm-up), and the child compiles again from the blob cache on its first batch (0.16 s
    here). A child forked without that leaves the parent's objects untouched and compiles its own.
    """

    def __init__(self, compile_model: Callable[[], object], shape: tuple[int, int], conf: float):
        self.shape = shape
        self.conf = conf
        self.lock = threading.Lock()
        self._compile = compile_model
        self._load()
        _LOADED.add(self)

    def _load(self) -> None:
        compiled = self._compile()
        count = max(1, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.requests = [compiled.create_infer_request() for _ in range(count)]
        self._pid = os.getpid()

    def release(self) -> None:
        """Drop the compiled model and its requests (before a fork); the next batch compiles again."""
        with self.lock:
            if self._pid == os.getpid():
                self.requests = []

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        with self.lock:
            if self._pid != os.getpid() and self.requests:
                _INHERITED.append(self.requests)  # the parent's: never used, never destroyed here
                self.requests = []
            if not self.requests:
                self._load()
            try:
                return self._detect(images)
            except BaseException:
                for request in self.requests:  # a failed batch leaves no request busy for the next one
                    request.wait_for(WAIT_MS)
                raise

    def _detect(self, images: list[np.ndarray]) -> list[Detections]:
        results: list[Detections | None] = [None] * len(images)
        pending: list[tuple[int, object] | None] = [None] * len(self.requests)
        for index, image in enumerate(images):
            slot = index % len(self.requests)
            if pending[slot] is not None:
                self._collect(pending[slot], images, results)
            request = self.requests[slot]
            request.start_async({0: letterbox(image, self.shape)[None]}, share_inputs=False)
            pending[slot] = (index, request)
        for item in pending:
            if item is not None:
                self._collect(item, images, results)
        return results  # type: ignore[return-value]

    def _collect(self, item, images, results) -> None:
        index, request = item
        if not request.wait_for(WAIT_MS):
            raise InferenceError(f"OpenVINO inference did not finish within {WAIT_MS / 1000:.0f} s; retry the shard")
        output = request.get_output_tensor(0).data[0]  # (4 + 1 + 51, candidates)
        results[index] = postprocess(output, self.shape, images[index].shape[:2], self.conf)


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
