"""Frames in batches, decoded ahead in a background thread: decode and inference overlap on two cores."""

from __future__ import annotations

import queue
import threading


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


def prefetch(iterable, depth: int):
    """Iterate ``iterable`` in a background thread, at most ``depth`` items ahead; errors propagate."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            items.put(exc)

    worker = threading.Thread(target=produce, name="vigil-decode", daemon=True)
    worker.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
