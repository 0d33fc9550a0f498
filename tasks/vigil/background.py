"""Work done ahead in a background thread: decoding overlaps inference or the appearance network
(FFmpeg and the runtimes release the GIL), with memory bounded by how far ahead it may run."""

from __future__ import annotations

import queue
import threading


def prefetch(iterable, depth: int):
    """Iterate ``iterable`` in a background thread, at most ``depth`` items ahead; errors propagate."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def hand_over(item) -> bool:
        """Queue ``item`` unless the consumer has stopped (a full queue would block forever)."""
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterable:
                if not hand_over(item):
                    break
            else:
                hand_over(done)
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over(exc)
        finally:
            getattr(iterable, "close", lambda: None)()  # a generator's files are closed in its own thread

    worker = threading.Thread(target=produce, name="vigil-prefetch", daemon=True)
    worker.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
