"""runtime=openvino-int8 against FP32 PyTorch on real frames of the sample footage."""

from pathlib import Path

import numpy as np
import pytest

from vigil.config import ProcessParams
from vigil.model.detector import load_detector
from vigil.model.quantize import (
    CALIBRATION_FRAMES,
    HEAD_IGNORED_PATTERNS,
    calibration_frames,
    calibration_indices,
    cpu_int8_flags,
)

SAMPLE = Path(__file__).parent / "data" / "one-by-one-person-detection.mp4"
IOU_BAR = 0.9  # the benchmark's bar for "the same box"
MATCH_BAR = 0.95  # share of FP32 persons INT8 must find at that IoU (and share of INT8 persons that are FP32's)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _matched(boxes, others) -> int:
    return sum(1 for box in boxes if any(_iou(box, other) >= IOU_BAR for other in others))


def held_out_frames(count: int = 48) -> list[np.ndarray]:
    """Frames between the calibration frames, so the test does not grade the calibration set."""
    import av

    with av.open(str(SAMPLE)) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    calibrating = set(calibration_indices(len(frames)))
    held_out = [i for i in range(len(frames)) if i not in calibrating]
    return [frames[held_out[int(k * len(held_out) / count)]] for k in range(count)]


def test_calibration_takes_even_spread_frames_of_the_footage():
    frames = calibration_frames(SAMPLE)
    assert len(frames) == CALIBRATION_FRAMES and frames[0].shape == (432, 768, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[-1])


@pytest.mark.slow
@pytest.mark.skipif(not cpu_int8_flags(), reason="CPU has no VNNI/AMX-INT8 (avx512_vnni, avx_vnni, amx_int8): the INT8 model is not built in CI there (OpenVINO runs INT8 on AVX2 too, see the README)")
def test_int8_finds_the_same_people_as_fp32_pytorch_on_the_sample_footage():
    int8 = load_detector(ProcessParams(runtime="openvino-int8"))
    fp32 = load_detector(ProcessParams(runtime="torch"))
    from vigil.model.detector import instruction_path

    assert int8.runtime.startswith("openvino-") and int8.runtime.endswith(f"/cpu/{instruction_path('int8')}")
    frames = held_out_frames()
    reference, found = [], []
    for start in range(0, len(frames), 8):  # batches of 8, as shards run
        reference += fp32.detect(frames[start : start + 8])
        found += int8.detect(frames[start : start + 8])
    persons = sum(len(d) for d in reference)
    assert persons >= 20, "the sample footage should show people in most of these frames"
    recall = sum(_matched(r.xyxy, f.xyxy) for r, f in zip(reference, found)) / persons
    precision = sum(_matched(f.xyxy, r.xyxy) for r, f in zip(reference, found)) / max(1, sum(len(d) for d in found))
    assert recall >= MATCH_BAR and precision >= MATCH_BAR, (recall, precision)


def test_the_head_patterns_name_the_cached_ir_head():
    """The ignored scope must match the export's node names, or NNCF would quantise the head."""
    import re

    import openvino

    from vigil.model.detector import default_model_file, export

    xml = next(export(default_model_file(), (384, 640), "openvino").glob("*.xml"))
    names = [op.get_friendly_name() for op in openvino.Core().read_model(xml).get_ordered_ops()]
    head = [n for n in names if any(re.fullmatch(p, n) for p in HEAD_IGNORED_PATTERNS)]
    assert any("dfl" in n for n in head) and any(re.search(r"cv4\.\d\.2/", n) for n in head)
    assert not any(n.startswith("__module.model.0.") for n in head)
