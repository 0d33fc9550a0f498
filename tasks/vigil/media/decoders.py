"""Which decoder a shard uses: the host's cores, or a GPU's NVDEC engines (``decoder`` parameter)."""

from __future__ import annotations

from functools import lru_cache

from vigil.config import ProcessParams
from vigil.errors import ParameterError


def choose_decoder(params: ProcessParams, shard_index: int = 0) -> str:
    """``cpu`` or ``nvdec:N`` for one shard (the H.264/HEVC output is bit-exact either way).

    ``auto`` with a CUDA device whose driver offers NVDEC decodes every other shard there and the
    rest on the host cores: on a GPU the model is cheap and decoding binds, and GPU and host
    together decoded 1.6x what either did alone (bench/gpu.py on an H100 with 16 cores)."""
    if params.decoder == "cpu" or not params.device.startswith("cuda"):
        return "cpu"
    gpu = int(params.device.partition(":")[2] or 0)
    problem = nvdec_problem(gpu)
    if problem is not None:
        if params.decoder == "nvdec":
            raise ParameterError(f"decoder 'nvdec' is not available on cuda:{gpu} ({problem}); use decoder 'auto' or 'cpu'")
        return "cpu"
    if params.decoder == "auto" and shard_index % 2:
        return "cpu"
    return f"nvdec:{gpu}"


@lru_cache(maxsize=None)
def nvdec_problem(gpu: int) -> str | None:
    """Why NVDEC cannot be used on this GPU, or None when it can (asked once per process)."""
    import av
    from av.codec.hwaccel import hwdevices_available

    if "cuda" not in hwdevices_available():
        return "this FFmpeg build has no CUDA hardware decoding"
    try:
        hwaccel(f"nvdec:{gpu}").create(av.Codec("h264", "r"))
    except Exception as exc:  # no driver, no GPU, no libnvcuvid: each says so in its own words
        return f"{type(exc).__name__}: {exc}"
    return None


def hwaccel(decoder: str):
    if decoder == "cpu":
        return None
    from av.codec.hwaccel import HWAccel

    # is_hw_owned: decoded frames stay in GPU memory; only sampled ones are copied out. FFmpeg
    # keeps a CUDA context of its own (PyTorch's primary context has flags FFmpeg refuses to share).
    # Codecs NVDEC cannot decode fall back to the CPU decoder.
    device = decoder.partition(":")[2]
    return HWAccel("cuda", device=device, allow_software_fallback=True, is_hw_owned=True, options={"primary_ctx": "0"})
