"""Progress for anything that takes more than a few seconds, on standard error: a rich bar in a
terminal, and elsewhere (a pipe: the flow, DVC, CI logs) a plain line every few seconds, which
survives being read line by line."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Item = TypeVar("Item")
# Seconds between plain progress lines (and the shortest wait before the first).
PLAIN_EVERY_SECONDS = 10.0


def clock(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(description: str, done: int, total: int | None, elapsed: float) -> str:
    """One plain progress line: "evaluate test: 12/48, 0:31 elapsed, about 1:33 left"."""
    counted = f"{done}/{total}" if total else f"{done}"
    line = f"{description}: {counted}, {clock(elapsed)} elapsed"
    if total and 0 < done < total:
        line += f", about {clock(elapsed / done * (total - done))} left"
    return line


def progress(items: Iterable[Item], description: str, total: int | None = None) -> Iterator[Item]:
    """Iterate over items while showing progress; `total` may be an estimate or None."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    console = Console(stderr=True)
    if not console.is_terminal:
        yield from _plain(items, description, total)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
        bar.update(task, total=bar.tasks[0].completed)


def _plain(items: Iterable[Item], description: str, total: int | None) -> Iterator[Item]:
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= PLAIN_EVERY_SECONDS:
            last = now
            print(progress_line(description, done, total, now - start), file=sys.stderr, flush=True)
    if done:
        line = progress_line(description, done, done, time.monotonic() - start)
        print(line, file=sys.stderr, flush=True)
