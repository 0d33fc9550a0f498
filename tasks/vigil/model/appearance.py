"""Whole-body appearance descriptors from the pose model's own backbone: no other weights, no faces.

A person's box is cut out of the frame (the whole body, as detected; never a face region), resized
to ``CROP_HW`` and run through the first layers of the hash-checked pose weights, using
Ultralytics' ``embed`` stopping point (``DetectionModel.predict(embed=[...])`` runs the network only
up to the deepest layer asked for). Ultralytics pools a layer globally; a person's clothes differ
from top to bottom, so the feature maps of ``LAYERS`` are pooled here over the whole crop and over
``STRIPES`` horizontal bands, each piece L2-normalised, then joined and normalised again. This is
the crop-based way Ultralytics' own ReID encoder uses a ``.pt`` model (``trackers/utils/reid.py``);
BoT-SORT's ``model: auto`` pools the detector's head inputs per anchor instead, which needs the full
detection pass that has already run and was not kept.

These are generic detector features, not a trained re-identification model: see the README's
"Find this person" for how well they retrieve the same person, and why a match is only a lead.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from vigil.model.detector import ModelFile, default_model_file

LAYERS = (4, 6, 10)  # backbone stages at 1/8, 1/16 and 1/32 resolution (yolo11 pose layout)
STRIPES = 3
CROP_HW = (256, 128)  # the usual person-crop aspect (2:1)
METHOD = f"yolo-backbone-l{'-'.join(map(str, LAYERS))}-s{STRIPES}-{CROP_HW[0]}x{CROP_HW[1]}-v1"


BATCH = 32  # crops per forward pass: per-frame passes of 1-3 crops took 2x the CPU time


class AppearanceEncoder:
    """``crops(image, boxes)`` then ``describe_crops(crops)``: one L2-normalised float32 descriptor
    per whole-body box, ``batch_size`` crops (of any frames) per forward pass."""

    batch_size = BATCH

    def __init__(self, model_file: ModelFile, device: str = "cpu"):
        from ultralytics import YOLO

        self.model_file = model_file
        self.device = device
        self.method_version = f"{METHOD}/{model_file.name}@{model_file.sha256[:12]}"
        # Convolutions fused with their batch norms, as Ultralytics predicts: fewer passes over
        # each feature map, and the descriptors differ only in float rounding (under 1e-6).
        self.net = YOLO(str(model_file.path), task="pose").model.to(device).float().eval().fuse(verbose=False)
        self._maps: dict[int, object] = {}
        for index in LAYERS:
            self.net.model[index].register_forward_hook(self._keeper(index))

    def _keeper(self, index: int):
        def keep(_module, _inputs, output):
            self._maps[index] = output

        return keep

    @staticmethod
    def crops(image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray | None]:
        """Each box's pixels (``(n, 4)`` xyxy source pixels of a BGR image) as RGB at ``CROP_HW``;
        None for a box with no pixels inside the image."""
        return [_crop(image, *box) for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)]

    def describe_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(len(crops), dims)`` descriptors, ``batch_size`` crops per forward pass."""
        import torch

        out = np.zeros((len(crops), self.dims), np.float32)
        for start in range(0, len(crops), self.batch_size):
            chunk = np.stack(crops[start : start + self.batch_size])
            batch = torch.from_numpy(chunk).to(self.device).permute(0, 3, 1, 2).float() / 255.0
            with torch.inference_mode():
                self.net.predict(batch, embed=[max(LAYERS)])
                pieces = [_pool(self._maps[index]) for index in LAYERS]
            self._maps.clear()
            joined = np.concatenate(pieces, axis=1)
            out[start : start + len(chunk)] = joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-12)
        return out

    @property
    def dims(self) -> int:
        channels = {index: _channels(self.net.model[index]) for index in LAYERS}
        return sum(channels.values()) * (STRIPES + 1)


def _channels(module) -> int:
    for attribute in ("cv2", "conv"):
        inner = getattr(module, attribute, None)
        if inner is not None and hasattr(inner, "conv"):
            return int(inner.conv.out_channels)
    return int(module.cv2.conv.out_channels)


def _crop(image: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray | None:
    """The box's pixels, clipped to the image, as RGB at ``CROP_HW``; None when nothing is left."""
    import cv2

    height, width = image.shape[:2]
    left, top = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    right, bottom = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
    if right - left < 2 or bottom - top < 2:
        return None
    patch = cv2.resize(image[top:bottom, left:right], (CROP_HW[1], CROP_HW[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(patch[:, :, ::-1])


def _pool(feature_map) -> np.ndarray:
    """``(n, C·(STRIPES+1))``: the global mean and one mean per horizontal band, each L2-normalised."""
    import torch

    bands = torch.nn.functional.adaptive_avg_pool2d(feature_map, (STRIPES, 1)).squeeze(-1)  # n, C, STRIPES
    whole = feature_map.mean(dim=(2, 3)).unsqueeze(-1)  # n, C, 1
    parts = torch.cat([whole, bands], dim=2).permute(0, 2, 1)  # n, STRIPES+1, C
    parts = torch.nn.functional.normalize(parts, dim=2)
    return parts.reshape(parts.shape[0], -1).cpu().numpy().astype(np.float32)


@lru_cache(maxsize=2)
def load_encoder(model_file: ModelFile | None = None, device: str = "cpu") -> AppearanceEncoder:
    """One encoder per process and weights (loading takes about a second); the default weights
    from the wheel unless another hash-checked file is given."""
    return AppearanceEncoder(model_file or default_model_file(), device)
