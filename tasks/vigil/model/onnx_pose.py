"""The ONNX pose model run directly with ONNX Runtime, for ``runtime=onnx`` (FP32 on any CPU).

As on the OpenVINO path, the pixel conversion is part of the model: the exported graph gets a
uint8 BGR NHWC input, cast, transposed, turned to RGB and divided by 255 inside ONNX Runtime, so
no float copy of the batch is made in Python; letterbox and suppression are ``pose_io``'s numpy.
The numbers are those of Ultralytics' ONNX predictor: the same graph on the same float input
(``x / 255`` is one correctly rounded division whatever the order of the steps around it).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vigil.model.detections import Detections
from vigil.model.per_process import PerProcessModel
from vigil.model.pose_io import letterbox, postprocess

INPUT = "images_u8_bgr_nhwc"


@lru_cache(maxsize=2)
def u8_input_model(onnx_path: Path) -> bytes:
    """The exported model with a uint8 BGR NHWC input in front of its float RGB NCHW one. Built
    once per process: a task forked from a warm worker builds only its session from these bytes."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    (old,) = graph.input
    dims = old.type.tensor_type.shape.dim  # batch, 3, height, width (dynamic or not, as exported)
    nhwc = [d.dim_param or d.dim_value for d in (dims[0], dims[2], dims[3])] + [3]
    prefix = [
        helper.make_node("Cast", [INPUT], ["_u8_as_float"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["_u8_as_float"], ["_nchw_bgr"], perm=[0, 3, 1, 2]),
        helper.make_node("Gather", ["_nchw_bgr", "_bgr_to_rgb"], ["_nchw_rgb"], axis=1),
        helper.make_node("Div", ["_nchw_rgb", "_255"], [old.name]),
    ]
    graph.initializer.extend([helper.make_tensor("_bgr_to_rgb", TensorProto.INT64, [3], [2, 1, 0]),
                              helper.make_tensor("_255", TensorProto.FLOAT, [], [255.0])])  # fmt: skip
    graph.input.remove(old)
    graph.input.insert(0, helper.make_tensor_value_info(INPUT, TensorProto.UINT8, nhwc))
    for node in reversed(prefix):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    return model.SerializeToString()


class OnnxPose(PerProcessModel[object]):
    """Letterbox a list of same-size BGR frames into one uint8 batch, run it, suppress each image.
    One run per batch: ONNX Runtime spreads it over the cores itself, and the shard's decoding
    thread runs alongside (the call releases the GIL)."""

    def __init__(self, onnx_path: Path, shape: tuple[int, int], conf: float):
        self.onnx_path = onnx_path
        self.shape = shape
        self.conf = conf
        super().__init__()

    def _load(self):
        import onnxruntime

        return onnxruntime.InferenceSession(u8_input_model(self.onnx_path), providers=["CPUExecutionProvider"])

    def _run(self, session, images: list[np.ndarray]) -> list[Detections]:
        batch = np.stack([letterbox(image, self.shape) for image in images])
        (outputs,) = session.run(None, {INPUT: batch})  # (batch, 4 + 1 + 51, candidates)
        return [postprocess(output, self.shape, image.shape[:2], self.conf) for output, image in zip(outputs, images)]
