"""Frames in batches for the model (``vigil.background.prefetch`` decodes them ahead in a thread)."""

from __future__ import annotations


def batches(frames, size: int):
    """Lists holding up to ``size`` decoded frames (and any bins without a frame met on the way)."""
    batch, decoded = [], 0
    for frame in frames:
        batch.append(frame)
        decoded += frame.image is not None
        if decoded >= size:
            yield batch
            batch, decoded = [], 0
    if batch:
        yield batch
