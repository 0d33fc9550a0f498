"""Work done ahead in a background thread (``vigil.background.prefetch``)."""

from __future__ import annotations

import threading
import time

import pytest

from vigil.background import prefetch


def test_items_arrive_in_order_and_at_most_depth_ahead():
    made = []

    def counted():
        for i in range(20):
            made.append(i)
            yield i

    stream = prefetch(counted(), depth=2)
    assert next(stream) == 0
    time.sleep(0.3)
    assert len(made) <= 4  # the one handed out, two queued, one waiting to be queued
    assert list(stream) == list(range(1, 20))


def test_an_error_in_the_producer_is_raised_to_the_consumer():
    def failing():
        yield 1
        raise ValueError("damaged")

    with pytest.raises(ValueError, match="damaged"):
        list(prefetch(failing(), depth=2))


def test_a_consumer_that_stops_early_closes_the_producer_in_its_thread():
    closed_in = []

    def source():
        try:
            yield from range(100)
        finally:
            closed_in.append(threading.current_thread().name)

    stream = prefetch(source(), depth=2)
    assert next(stream) == 0
    stream.close()  # a caller that fails half-way, say
    assert closed_in == ["vigil-prefetch"]  # its files are not left open for the garbage collector
