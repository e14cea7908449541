"""Atomic outputs: write under a temporary name beside the target, then rename over it.

A crash or an error mid-write leaves either the previous complete output or nothing, never a
half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


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
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
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
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.chmod(staging, _default_mode(directory=False))
    os.replace(staging, target)


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as staging:
        staging.write_text(text)


def write_json(target: str | Path, value: Any) -> None:
    write_text(target, json.dumps(value, indent=2, sort_keys=True, allow_nan=True) + "\n")


def save_array(target: str | Path, array: np.ndarray) -> None:
    with atomic_path(target) as staging:
        np.save(staging, array, allow_pickle=False)
