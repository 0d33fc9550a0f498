"""Static-scene gating (off by default): skip inference on a sampled frame that has not changed
since the last analysed frame, and say so.

Surveillance footage is mostly an empty corridor. With ``static_gate`` set, each decoded sampled
frame is compared with the last frame that went through the model: both are reduced to 64×36
grey, and if fewer than ``static_gate`` percent of those pixels changed by more than
``PIXEL_CHANGE`` grey levels, the frame is not analysed. Its ``frames`` row gets ``status = "static"``, the people count of that analysed frame,
and ``inherits_from`` = its frame_index; no detection rows are written for it. So "nobody was
there" (``ok``, 0 persons) stays distinguishable from "not looked at" (``static``), and a frame is
``ok`` only if the model saw it.
"""

from __future__ import annotations

import numpy as np

THUMBNAIL = (64, 36)
PIXEL_CHANGE = 12  # grey levels: more than sensor noise and compression flicker


def thumbnail(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.int16)


class StaticGate:
    """Decides, frame by frame in time order, which frames need the model."""

    def __init__(self, threshold: float | None):
        self.threshold = threshold
        self.reference: tuple[int, np.ndarray] | None = None  # (frame_index, thumbnail) last sent to the model

    def reference_for(self, frame_index: int, image: np.ndarray) -> int | None:
        """None: analyse this frame (it becomes the reference); else the frame it inherits from."""
        if self.threshold is None:
            return None
        small = thumbnail(image)
        changed = 100.0 * float((np.abs(small - self.reference[1]) > PIXEL_CHANGE).mean()) if self.reference else 100.0
        if changed < self.threshold:
            return self.reference[0]
        self.reference = (frame_index, small)
        return None
