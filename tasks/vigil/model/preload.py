"""Import the inference stack (Ultralytics, torch, the chosen runtime) without loading a model:
for processes that fork workers (vigil.orchestration.worker), so each child starts with them."""

from __future__ import annotations

from vigil.config import ProcessParams


def import_runtimes(params: ProcessParams) -> None:
    """Import what ``params``' runtime needs for inference; nothing is loaded or compiled."""
    import ultralytics.engine.predictor  # noqa: F401  (imports torch)
    import ultralytics.nn.autobackend  # noqa: F401

    from vigil.model.detector import choose_runtime

    runtime = choose_runtime(params)
    if runtime.startswith("openvino"):
        import openvino  # noqa: F401
    elif runtime == "onnx":
        import onnxruntime  # noqa: F401
