"""A stage process stops when whoever started it is gone, and stops cleanly when asked to.

`kill -9` of `dvc repro` (or of the flow that runs it) kills no children: the stage would
train on, alone, and the next run would start a second trainer in the same tree. So each stage
watches the processes that started it, up to the nearest `dvc` and the flow or Prefect engine
above it, and stops itself when one of them ends. Stopping is SIGTERM to itself, whose handler
raises StoppedError in the main thread: the stage's MLflow runs end KILLED and the CLI prints
one line. A stage that does not get back to Python within the grace period exits outright.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from denoise.core.errors import StoppedError

_OWNERS = ("flows.pipeline", "prefect")  # above dvc: the flow's own process, or a worker's


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time in clock ticks) of a process, from /proc; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[19]


def _command(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_dvc(command: list[str]) -> bool:
    """`dvc ...`, `python .../bin/dvc ...` or `python -m dvc ...`."""
    return any(Path(part).name == "dvc" for part in command[:3])


def _name(command: list[str]) -> str:
    """A short name for a process: `dvc`, `the flow`, or its program's name."""
    if _is_dvc(command):
        return "dvc"
    if any(owner in " ".join(command) for owner in _OWNERS):
        return "the flow"
    return Path(command[0]).name if command else "the parent"


def owners(pid: int | None = None) -> list[tuple[int, str, str]]:
    """The processes to outlive no longer than: (pid, start time, name), nearest first.

    The ancestors up to the nearest `dvc`, and the flow or Prefect process above it; with no
    `dvc` among the ancestors (a stage run by hand), the parent alone.
    """
    stat = _stat(pid or os.getpid())
    if stat is None:
        return []
    chain: list[tuple[int, str, str]] = []
    parent = stat[0]
    while parent > 1 and len(chain) < 8:
        parent_stat = _stat(parent)
        if parent_stat is None:
            break
        command = _command(parent)
        chain.append((parent, parent_stat[1], _name(command)))
        if _is_dvc(command):
            above = parent_stat[0]
            above_stat = _stat(above)
            if above > 1 and above_stat and _name(_command(above)) == "the flow":
                chain.append((above, above_stat[1], "the flow"))
            return chain
        parent = parent_stat[0]
    return chain[:1]


def alive(pid: int, start: str) -> bool:
    """Whether the process pid that started at `start` (clock ticks) still runs."""
    stat = _stat(pid)
    return stat is not None and stat[1] == start


def start_time(pid: int | None = None) -> str:
    """The process's start time in clock ticks since boot ('' where /proc is missing)."""
    stat = _stat(pid or os.getpid())
    return stat[1] if stat else ""


_stop_reason: list[str] = []  # why the lifeline stopped this process, for the one line
_watching: list[bool] = []  # whether watch() ran in this process
# A stop is on its way out (closing the stage's runs): another signal (the lifeline's, after
# a cancel's SIGTERM to the whole process group) must not cut that short.
_stopping: list[bool] = []
_previous_hook: list[Any] = []  # the unraisable hook before watch()'s


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    if _stopping:
        return
    _stopping.append(True)
    raise StoppedError(
        _stop_reason[0] if _stop_reason else f"stopped by {signal.Signals(signum).name}"
    )


def _deliver_again(unraisable: Any) -> None:
    """sys.unraisablehook. A signal handler runs at whatever Python code comes next, which may
    be a garbage-collection callback (JAX registers one) or a __del__: a StoppedError raised
    there is only printed ("Exception ignored in ..."), and the stage would run on until the
    grace period ends. Send the signal again, to be raised in ordinary code: from another
    thread, once this hook has returned (sent from here, it would be raised in the hook, and
    ignored too)."""
    if isinstance(unraisable.exc_value, StoppedError):
        _stopping.clear()
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
    else:
        _previous_hook[0](unraisable)


def watch(interval: float = 1.0, grace: float = 60.0) -> None:
    """Stop this process (SIGTERM to itself, then exit after `grace` s) when an owner ends.

    Installs the SIGTERM handler that raises StoppedError; call it from the main thread. A
    second call in the same process (stages run in-process by tests) changes nothing.
    """
    if _watching:
        return
    _watching.append(True)
    signal.signal(signal.SIGTERM, _raise_stopped)
    _previous_hook.append(sys.unraisablehook)
    sys.unraisablehook = _deliver_again
    watched = owners()
    if not watched:
        return

    def run() -> None:
        while True:
            for pid, started, name in watched:
                if not alive(pid, started):
                    _stop_reason.append(
                        f"{name} (pid {pid}), which started this process, has ended; stopped"
                    )
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(grace)
                    sys.stderr.write(f"error: {_stop_reason[0]} after {grace:g} s\n")
                    os._exit(1)
            time.sleep(interval)

    threading.Thread(target=run, name="lifeline", daemon=True).start()
