"""The Typer app, and what every command shares: its options, its errors, loading params."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from denoise.core import lifeline, runtime
from denoise.core.atomic import is_disk_full
from denoise.core.config import Params, load_params
from denoise.core.errors import DenoiseError, StoppedError
from denoise.tracking.server import tracking_error

app = typer.Typer(
    help="Turn raw video into trained, versioned denoising models.",
    # Docstrings as markdown: a paragraph's lines join and wrap to the terminal.
    rich_markup_mode="markdown",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="Parameters file (params.yaml).")
]
Command = TypeVar("Command", bound=Callable[..., Any])


# Keras re-raises an error from inside a layer's call with this preamble and the arguments.
_KERAS_WRAPPED = "Exception encountered when calling"


def _user_errors(command: Command) -> Command:
    """Turn a DenoiseError, a stop (StoppedError), a tracking server that stopped answering or
    a full disk into one line on standard error and exit status 1."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except StoppedError as error:
            # The stage's runs have ended KILLED on the way out. What remains of an ordinary
            # exit (TensorFlow's and MLflow's threads, atexit hooks) took 20 s and more after
            # the line: a stopped process leaves at once.
            with contextlib.suppress(OSError):  # a killed parent takes the pipe with it
                typer.echo(f"error: {error}", err=True)
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(1)
        except DenoiseError as error:
            message = str(error)
            if message.startswith(_KERAS_WRAPPED):  # raised inside a layer's call: unwrap
                message = message.split("\n\n")[1]
        except Exception as error:
            tracking = tracking_error(error)
            if tracking is not None:
                message = str(tracking)
            elif is_disk_full(error):
                reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                message = f"no space left on the device ({reason}); free space and run again"
            else:
                raise
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main() -> None:
    """Set TensorFlow's CPU options; quiet its and FFmpeg's C++ chatter unless asked for.

    Decoding problems still reach the user, as one `error:` line from the extract stage.
    """
    runtime.configure()
    # Past the file-size limit (ulimit -f) a write fails with EFBIG, handled as a full disk,
    # instead of the signal killing the process mid-write.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its INFO lines are chatter


def _load(params_path: Path) -> Params:
    return load_params(params_path)


def _stage(params_path: Path) -> Params:
    """A pipeline stage's params; from here on the stage stops when the `dvc` (or flow) that
    started it ends, and ends its MLflow runs KILLED on SIGTERM. Call it before importing the
    stage's module: TensorFlow's import alone takes a minute on a loaded machine, and a `dvc`
    killed meanwhile would go unnoticed."""
    lifeline.watch()
    return _load(params_path)
