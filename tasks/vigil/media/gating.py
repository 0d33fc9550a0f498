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
    """Decides, frame by frame in time order, which frames need the model. The reference is always
    the last frame it let through, so a static frame inherits from the latest analysed frame."""

    def __init__(self, threshold: float | None):
        self.threshold = threshold
        self.reference: np.ndarray | None = None  # thumbnail of the last frame sent to the model

    def is_static(self, image: np.ndarray) -> bool:
        """True: skip the model for this frame. False: analyse it (it becomes the reference)."""
        if self.threshold is None:
            return False
        small = thumbnail(image)
        if self.reference is not None:
            changed_percent = 100.0 * float((np.abs(small - self.reference) > PIXEL_CHANGE).mean())
            if changed_percent < self.threshold:
                return True
        self.reference = small
        return False
