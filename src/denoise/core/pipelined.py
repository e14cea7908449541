"""Decoding and encoding beside the model: an iterable read ahead, and a sink written behind,
each in a thread of its own, so that a video's I/O overlaps the model's calls (PyAV, OpenCV,
OpenVINO and TensorFlow release the GIL while they work)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_DONE = object()


def read_ahead(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """items, produced in a thread up to depth ahead of the consumer; what the producer raises
    is raised here, in order. Leaving early stops the producer at its next item."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put((True, item))
        except BaseException as error:  # handed to the consumer
            buffer.put((False, error))
        buffer.put((True, _DONE))

    thread = threading.Thread(target=produce, daemon=True, name="read-ahead")
    thread.start()
    try:
        while True:
            ok, item = buffer.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a producer waiting on a full buffer
                buffer.get_nowait()
        thread.join(timeout=60)


@contextlib.contextmanager
def write_behind(write: Callable[[Any], None], depth: int = 2) -> Iterator[Callable[[Any], None]]:
    """A write that queues its item for `write` in a thread; the block's end waits for every
    item. What `write` raises is raised by the next call or at the block's end."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    failed: list[BaseException] = []

    def consume() -> None:
        while (item := buffer.get()) is not _DONE:
            if not failed:
                try:
                    write(item)
                except BaseException as error:  # handed to the producer
                    failed.append(error)

    thread = threading.Thread(target=consume, daemon=True, name="write-behind")
    thread.start()

    def put(item: Any) -> None:
        if failed:
            raise failed[0]
        buffer.put(item)

    try:
        yield put
    finally:
        buffer.put(_DONE)
        thread.join()
    if failed:
        raise failed[0]
