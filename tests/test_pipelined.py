"""Reading ahead and writing behind (core.pipelined): order kept, errors handed over."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from denoise.core.pipelined import read_ahead, write_behind


def _items_then_failure() -> Iterator[int]:
    yield from range(5)
    raise ValueError("frame 5 is broken")


def test_reading_ahead_keeps_the_order_and_raises_where_the_source_did() -> None:
    assert list(read_ahead(range(20), depth=3)) == list(range(20))
    seen = []
    with pytest.raises(ValueError, match="frame 5 is broken"):
        for item in read_ahead(_items_then_failure()):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]
    for item in read_ahead(range(1000), depth=2):  # leaving early stops the producer
        if item == 3:
            break


def test_writing_behind_writes_everything_in_order_and_hands_back_errors() -> None:
    written: list[int] = []
    with write_behind(written.append) as write:
        for item in range(50):
            write(item)
    assert written == list(range(50))

    def full_disk(item: int) -> None:
        raise OSError("no space left")

    with pytest.raises(OSError, match="no space left"), write_behind(full_disk) as write:
        write(1)
