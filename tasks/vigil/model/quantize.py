"""INT8 OpenVINO model for ``runtime=openvino-int8``: NNCF post-training quantisation of the
cached FP32 IR, with the pose/detection head kept in floating point.

Why the head stays in float: the earlier whole-graph static quantisation produced zero boxes —
the final 1x1 convolutions emit box distances, class logits and keypoint offsets whose ranges
INT8 cannot hold, and DFL/decoding multiply them by strides and anchors. So the ignored scope
is the head's output convolutions (``model.23.cv2/cv3/cv4.<level>.2``), DFL (``model.23.dfl``)
and every decoding op that sits directly in ``model.23`` (reshape, sigmoid, anchors, concat).
The backbone, neck and the head's inner convolutions run in INT8 (VNNI / AMX-INT8).

Calibration: frames decoded from a recording (by default the project's sample footage),
letterboxed by Ultralytics' own predictor exactly as inference letterboxes them. Built once per
weights hash, input shape, calibration file hash, NNCF version and recipe; cached beside the other
exports; needs no network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vigil.errors import ParameterError

CALIBRATION_FRAMES = 150  # NNCF's statistics settle well below its default 300; 150 keeps the build ~1 min on 2 cores
# The head's output convolutions, DFL, and the decoding ops directly under the head module.
HEAD_IGNORED_PATTERNS = (
    r"__module\.model\.23\.cv[234]\.\d+\.2/.*",
    r"__module\.model\.23\.dfl.*",
    r"__module\.model\.23/.*",
)
CALIBRATION_ENV = "VIGIL_INT8_CALIBRATION"
# Names how the model is quantised (ignored scope, bias correction) in the cache key, so a changed
# recipe builds a new model instead of reusing one built the old way. r2: full bias correction.
RECIPE = "r2"


def cpu_int8_flags() -> tuple[str, ...]:
    """The CPU's INT8 dot-product instructions (empty on plain AVX2, where OpenVINO still runs INT8 with
    multiply-adds: 1.86x its FP32 speed on an AMD Zen 3, against 2-4x with these)."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return ()
    return tuple(flag for flag in ("amx_int8", "avx512_vnni", "avx_vnni") if flag in words)


def default_calibration_video() -> Path:
    """``$VIGIL_INT8_CALIBRATION``, else the sample footage of a source checkout."""
    configured = os.environ.get(CALIBRATION_ENV)
    path = Path(configured) if configured else Path(__file__).resolve().parents[3] / "tests" / "data" / "one-by-one-person-detection.mp4"
    if not path.is_file():
        raise ParameterError(
            f"runtime openvino-int8 needs calibration footage and {path} does not exist: set {CALIBRATION_ENV} "
            "to a recording from the same kind of camera (a few minutes with people in view)"
        )
    return path


def calibration_frames(video: Path, count: int = CALIBRATION_FRAMES) -> list[np.ndarray]:
    """``count`` BGR frames spread evenly over ``video`` (decoded as ``media.frames`` decodes them)."""
    import av

    with av.open(str(video)) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    if not frames:
        raise ParameterError(f"calibration footage {video} has no decodable frames")
    return [frames[i] for i in calibration_indices(len(frames), count)]


def calibration_indices(total: int, count: int = CALIBRATION_FRAMES) -> list[int]:
    """Which of ``total`` decoded frames calibrate: ``count`` spread evenly from first to last."""
    return sorted(set(np.linspace(0, total - 1, num=min(count, total)).round().astype(int).tolist()))


def int8_export(fp32_ir_dir: Path, weights_sha256: str, shape: tuple[int, int], video: Path | None = None) -> Path:
    """The INT8 model directory for one input shape (built from ``fp32_ir_dir`` once, then cached)."""
    import nncf

    from vigil.model.detector import file_sha256

    video = video or default_calibration_video()
    calibration_key = file_sha256(video)[:12]
    target = fp32_ir_dir.parent / (
        f"{weights_sha256}-{shape[0]}x{shape[1]}-cal{calibration_key}-nncf{nncf.__version__}-{RECIPE}-int8_openvino_model"
    )  # Ultralytics recognises an OpenVINO model by the `_openvino_model` suffix
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=fp32_ir_dir.parent) as work:
        built = Path(work) / "int8_openvino_model"
        built.mkdir()
        _quantize(fp32_ir_dir, shape, calibration_frames(video), built)
        try:
            os.replace(built, target)  # atomic; a concurrent build of the same key is harmless
        except OSError:
            if not target.exists():
                raise
    return target


def _quantize(fp32_ir_dir: Path, shape: tuple[int, int], frames: list[np.ndarray], out: Path) -> None:
    import nncf
    import openvino
    from ultralytics import YOLO

    # Ultralytics' predictor letterboxes and normalises; using it keeps calibration identical to inference.
    yolo = YOLO(str(fp32_ir_dir), task="pose")
    yolo.predict(frames[:1], imgsz=shape, verbose=False)
    inputs = [yolo.predictor.preprocess([frame]).numpy() for frame in frames]

    xml = next(fp32_ir_dir.glob("*.xml"))
    model = openvino.Core().read_model(xml)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(inputs),
        preset=nncf.QuantizationPreset.MIXED,  # asymmetric activations: SiLU outputs are not centred on 0
        subset_size=len(inputs),
        ignored_scope=nncf.IgnoredScope(patterns=list(HEAD_IGNORED_PATTERNS)),
        # Full bias correction (NNCF's slower variant, +7 s on 2 cores) keeps the INT8 scores closer
        # to FP32: on the 60-minute bench recording agreement 0.975 -> 0.982 (README "INT8").
        fast_bias_correction=False,
    )
    openvino.save_model(quantized, out / xml.name, compress_to_fp16=False)
    shutil.copyfile(fp32_ir_dir / "metadata.yaml", out / "metadata.yaml")
