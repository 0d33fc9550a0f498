"""The OpenVINO pose model run directly, for ``runtime=openvino`` and ``openvino-int8``.

Ultralytics' predictor converts every frame in Python (BGR->RGB, HWC->CHW, uint8->float, /255)
and suppresses in torch, one image after another; on two cores that cost more than the model.
Here the conversion is compiled into the model (OpenVINO's PrePostProcessor: the input is the
letterboxed uint8 BGR frame, NHWC), a small pool of infer requests overlaps letterboxing and
post-processing with inference, and suppression and rescaling are numpy over all candidates
(``vigil.model.pose_io``, shared with the direct ONNX Runtime path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from vigil.errors import InferenceError
from vigil.model.detections import Detections
from vigil.model.per_process import PerProcessModel
from vigil.model.pose_io import letterbox, postprocess

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


class OpenVINOPose(PerProcessModel[list]):
    """Letterbox, infer and suppress a list of same-size BGR frames, with one infer request per
    OpenVINO stream: while one frame runs, the next is letterboxed and the previous suppressed.
    One loaded model serves every shard of a worker process (fork rule: ``per_process``)."""

    def __init__(self, compile_model: Callable[[], object], shape: tuple[int, int], conf: float):
        self.shape = shape
        self.conf = conf
        self._compile = compile_model
        super().__init__()

    def _load(self) -> list:
        compiled = self._compile()
        count = max(1, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        return [compiled.create_infer_request() for _ in range(count)]

    def _run(self, requests: list, images: list[np.ndarray]) -> list[Detections]:
        try:
            return self._detect(requests, images)
        except BaseException:
            for request in requests:  # a failed batch leaves no request busy for the next one
                request.wait_for(WAIT_MS)
            raise

    def _detect(self, requests: list, images: list[np.ndarray]) -> list[Detections]:
        results: list[Detections | None] = [None] * len(images)
        pending: list[tuple[int, object] | None] = [None] * len(requests)
        for index, image in enumerate(images):
            slot = index % len(requests)
            if pending[slot] is not None:
                self._collect(pending[slot], images, results)
            request = requests[slot]
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
