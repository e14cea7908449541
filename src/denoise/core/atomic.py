"""Atomic outputs: write under a temporary name beside the target, then rename over it.

A crash or an error mid-write leaves either the previous complete output or nothing, never a
half-written file that looks complete. A write that fails for lack of space (or the file-size
limit, `ulimit -f`) raises DiskFullError, one line naming the output and the space it needs;
a killed process's temporary names are removed by remove_stale at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import resource
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from denoise.core.errors import DiskFullError

_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_NO_SPACE_TEXT = ("No space left on device", "File too large", "Disk quota exceeded")
# numpy's tofile reports a short write as "<n> requested and <m> written", without an errno.
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def _default_mode(directory: bool) -> int:
    """Permissions a plain mkdir or open() would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `target` when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
    except BaseException as error:
        written = _size(staging)
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(error):
            raise _disk_full(target, written) from None
        raise
    os.chmod(staging, _default_mode(directory=True))
    previous = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, previous)
    os.replace(staging, target)
    shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to `target` when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Writers pick a format by the name's ending (".weights.h5", ".png"): the staging name keeps
    # every suffix. pathlib gives a name with leading dots ("..png") a suffix but no suffixes.
    ending = "".join(target.suffixes) or target.suffix
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", suffix=ending, dir=target.parent)
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
    except BaseException as error:
        written = _size(staging)
        staging.unlink(missing_ok=True)
        if is_disk_full(error):
            raise _disk_full(target, written) from None
        raise
    os.chmod(staging, _default_mode(directory=False))
    os.replace(staging, target)


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as staging:
        staging.write_text(text)


def json_text(value: Any) -> str:
    """value as the JSON text write_json writes."""
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=True) + "\n"


def write_json(target: str | Path, value: Any) -> None:
    write_text(target, json_text(value))


def is_disk_full(error: BaseException) -> bool:
    """Whether an error is a full device, a full quota or the file-size limit (ulimit -f).

    Libraries re-raise the OSError in their own types (SQLite, Arrow, HDF5), so the message
    counts as well as the errno.
    """
    while error is not None:
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            return True
        if any(text in str(error) for text in _NO_SPACE_TEXT) or _SHORT_WRITE.search(str(error)):
            return True
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return False


def _size(path: Path) -> int:
    """Bytes under path (a file or a folder); 0 if it is gone."""
    if path.is_file():
        return path.stat().st_size
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def _human(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _disk_full(target: Path, written: int) -> DiskFullError:
    """One line: the output, what it needs (at least the last complete one's size, and more
    than was written before the write failed), and what is free."""
    needed = max(_size(target) if target.exists() else 0, written)
    free = shutil.disk_usage(target.parent).free
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = (
        "" if soft == resource.RLIM_INFINITY else f", file-size limit (ulimit -f) {_human(soft)}"
    )
    return DiskFullError(
        f"{target}: no space to write it: needs more than {_human(needed)} "
        f"({_human(written)} written before the write failed), {_human(free)} free{limit}; "
        f"free space and run again ({_what_is_kept()})"
    )


def _what_is_kept() -> str:
    """Where the last good output is. A stage under `dvc repro` (DVC_STAGE set) had its
    outputs deleted by DVC before it ran: they are in DVC's cache, not in place."""
    stage = os.environ.get("DVC_STAGE")
    if stage:
        return f"the previous output is in DVC's cache: `dvc checkout {stage}` restores it"
    return "the previous output is intact"


def write_limit_error(target: Path, size: int) -> OSError | None:
    """The OSError a write of about `size` bytes at target would meet (the file-size limit,
    `ulimit -f`, or too little free space), for libraries that report a failed write with no
    error code (OpenCV's imwrite returns False); None when neither explains it."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and size > soft:
        return OSError(errno.EFBIG, f"{target}: File too large")
    if size > shutil.disk_usage(target.parent).free:
        return OSError(errno.ENOSPC, f"{target}: No space left on device")
    return None


def remove_stale(*targets: str | Path) -> list[Path]:
    """Remove the temporary names that atomic writes of each target left when their process
    was killed (.<name>.tmp-*, .<name>.old-*); return what was removed. Call it only when no
    writer of the targets runs (as a stage, holding DVC's repository lock)."""
    removed: list[Path] = []
    for target in map(Path, targets):
        if not target.parent.is_dir():
            continue
        patterns = {f".{target.name}.tmp-*", f".{target.stem}.tmp-*", f".{target.name}.old-*"}
        removed += sorted({path for pattern in patterns for path in target.parent.glob(pattern)})
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed
