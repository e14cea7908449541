"""One writer per folder: an exclusive, non-blocking lock that dies with its holder.

The lock is flock(2) on `<folder>/.lock`, which the kernel releases when the holder exits, so a
killed process never leaves a stale lock behind; the file holds the holder's pid, for the
message a second process prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from denoise.core.errors import BusyError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def exclusive(folder: str | Path, holder: str) -> Iterator[None]:
    """Hold folder's lock for the block; raise BusyError naming the holder's pid if taken.

    holder: what takes it, for the other process's message (`denoise train`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(descriptor, 200, 0).decode(errors="replace").strip() or "unknown"
            raise BusyError(
                f"{folder}: in use by {owner}; wait for it to finish, or stop it "
                "(the lock goes with the process)"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{holder} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def waiting(path: str | Path) -> Iterator[None]:
    """Hold an exclusive flock on the file at path for the block, waiting while another
    process holds it (for short critical sections: creating a store on first use)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
