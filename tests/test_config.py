import pytest

from vigil.config import ProcessParams, RunRequest
from vigil.errors import ParameterError


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sample_fps": -1}, "sample_fps must be in"),
        ({"sample_fps": 0}, "sample_fps must be in"),
        ({"shard_seconds": 0}, "shard_seconds must be between"),
        ({"sample_fps": 3, "shard_seconds": 10.5}, "whole number of sampling intervals"),
        ({"imgsz": 100}, "imgsz must be a multiple of 32"),
        ({"batch_size": 0}, "batch_size"),
        ({"model": "/models/custom.pt"}, "needs model_sha256"),
        ({"model_sha256": "abc"}, "64 hex digits"),
        ({"device": "tpu"}, "device must be"),
        ({"decoder": "vaapi"}, "decoder must be one of"),
        ({"decoder": "nvdec"}, "decodes on the GPU; use it with device 'cuda"),
    ],
)
def test_process_params_rejects(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        ProcessParams(**kwargs)


def test_process_params_accepts_fractional_rates_on_whole_intervals():
    from fractions import Fraction

    assert ProcessParams(sample_fps=0.3, shard_seconds=10).sample_interval == Fraction(10, 3)


def test_process_params_from_dict_rejects_unknown_keys():
    with pytest.raises(ParameterError, match="unknown processing parameters \\['shard_secs'\\]"):
        ProcessParams.from_dict({"shard_secs": 60})


def test_fingerprint_ignores_batching_and_decoder_but_not_sampling():
    base = ProcessParams()
    assert base.fingerprint() == ProcessParams(batch_size=32).fingerprint()
    assert base.fingerprint() == ProcessParams(device="cuda", decoder="nvdec").fingerprint()
    assert base.fingerprint() != ProcessParams(sample_fps=1).fingerprint()


@pytest.mark.parametrize(
    "sources, out, message",
    [
        ((), "file:///out", "at least one source"),
        (("s3://footage/drop/",), "s3://footage/drop/vigil-out", "lies inside source"),
        (("s3://footage/drop/",), "s3://footage/drop", "lies inside source"),
        (("file:///data/drop",), "file:///data/drop/out", "lies inside source"),
        (("/data/drop",), "file:///out", "file:///absolute/path"),
        (("ftp://host/x.mp4",), "file:///out", "unsupported URI scheme"),
        (("s3://footage/../secret/x.mp4",), "file:///out", "'..' segments"),
        (("file:///data/x.mp4",), "file://relative/out", "file:///absolute/path"),
    ],
)
def test_run_request_rejects(sources, out, message):
    with pytest.raises(ParameterError, match=message):
        RunRequest(sources=sources, out=out)


def test_run_request_allows_sibling_output():
    RunRequest(sources=("s3://footage/drop/",), out="s3://footage/drop-results/")


def test_run_request_requires_timezone_on_recording_start():
    with pytest.raises(ParameterError, match="time zone"):
        RunRequest(sources=("file:///a.mp4",), out="file:///o", recording_start="2024-03-01T22:15:00")
    RunRequest(sources=("file:///a.mp4",), out="file:///o", recording_start="2024-03-01T22:15:00Z")
