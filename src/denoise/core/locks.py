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


# The pipeline's lock: one `denoise run` or flow run per working tree (in DVC's own ignored
# temporary folder). A child that holds it by inheritance finds its descriptor in RUN_LOCK_FD.
RUN_LOCK = Path(".dvc") / "tmp" / "denoise-run"
RUN_LOCK_FD = "DENOISE_RUN_LOCK_FD"


@contextlib.contextmanager
def exclusive(folder: str | Path, holder: str) -> Iterator[int]:
    """Hold folder's lock for the block; raise BusyError naming the holder's pid if taken.

    holder: what takes it, for the other process's message (`denoise train`). Yields the
    lock's file descriptor: a child process given it (subprocess pass_fds) holds the lock on
    for as long as it lives, whatever becomes of this process.
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
        yield descriptor
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def pipeline_run(root: Path, holder: str) -> Iterator[int | None]:
    """Hold the tree's pipeline lock (RUN_LOCK under root) for the block, unless this process
    inherited it from the `denoise run` that started it (RUN_LOCK_FD names a descriptor it
    holds); raise BusyError at once, naming the running process, when another holds it."""
    inherited = os.environ.get(RUN_LOCK_FD, "")
    if inherited.isdigit() and _holds(int(inherited), root / RUN_LOCK / LOCK_NAME):
        yield None
        return
    with exclusive(root / RUN_LOCK, holder) as descriptor:
        yield descriptor


def _holds(descriptor: int, path: Path) -> bool:
    """Whether descriptor is open on the lock file at path and its lock is this process's (a
    descriptor of the same open file takes the lock again at once)."""
    try:
        opened, named = os.fstat(descriptor), os.stat(path)
        if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino):
            return False
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


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
