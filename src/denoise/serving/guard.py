"""What the served model refuses, and the hook that makes `mlflow models serve` refuse it early.

MLflow's scoring server (MLflow 3: FastAPI on uvicorn, `mlflow.pyfunc.scoring_server`) offers a
request timeout (`--timeout`, MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT) and no size limit: it reads
a body whole, answers 504 at the timeout while the model's thread runs on, and its error bodies
quote the input whole. DenoiserModel.load_context calls `install` in the server's process, where
the model loads before the app is built, so the /invocations handler MLflow then builds is
wrapped by `_guarded`:

- a Content-Length over apply.max_request_megabytes is refused (413) before a byte of the body
  is read; a body sent without one is read up to the limit, then refused;
- the request's limits and deadline (its arrival + the server's timeout) reach the model's
  predict in a context variable (asyncio.to_thread copies it into the model's thread), which
  refuses an image over apply.max_megapixels or values outside [0, 1] by more than
  apply.value_margin before the model runs, and stops between model calls at the deadline;
- every error answer is one line of JSON, {"error_code": ..., "message": ...}, quoting at most
  QUOTED characters of what MLflow said (which may quote the input).
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

MEGA = 1_000_000
QUOTED = 200  # characters of an MLflow error message (it may hold the input) an answer keeps
# MLflow's scoring server sets this variable, naming the model, in the process it serves from.
_SERVER_MODEL_PATH = "__pyfunc_model_path__"
_TIMEOUT_VARIABLE = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"
_CODES = {
    400: "BAD_REQUEST",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    504: "REQUEST_TIMED_OUT",
}
# Where MLflow's messages quote the input: "Failed to predict data '<input>'. \nError: ..." and
# "Failed to enforce schema of data '<input>' with schema ...".
_QUOTING = (
    re.compile(r"^Failed to predict data .*\nError: ", re.S),
    re.compile(r" of data '.*' with", re.S),
)


class Refused(ValueError):
    """A request the served model does not take: the HTTP status, and one line saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold (params.apply), and how long it may take."""

    max_request_bytes: int
    max_pixels: int
    value_margin: float
    timeout_seconds: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Limits:
        """From a model_config (params.apply's keys) and the server's timeout variable."""
        return cls(
            max_request_bytes=int(float(config["max_request_megabytes"]) * MEGA),
            max_pixels=int(float(config["max_megapixels"]) * MEGA),
            value_margin=float(config["value_margin"]),
            # MLflow's server sets it from --timeout; elsewhere no request is timed.
            timeout_seconds=float(os.environ.get(_TIMEOUT_VARIABLE, "inf")),
        )


@dataclasses.dataclass
class Served:
    """One request being served: its limits and when it arrived."""

    limits: Limits
    arrived: float  # time.monotonic()
    stopped: bool = False

    @property
    def deadline(self) -> float:
        return self.arrived + self.limits.timeout_seconds

    def check_images(self, images: np.ndarray) -> None:
        """Refuse images over the pixel limit or with values outside the margin.

        images: float32 (..., H, W, 3): images, or a temporal model's windows.
        """
        height, width = images.shape[-3], images.shape[-2]
        if height * width > self.limits.max_pixels:
            raise Refused(
                413,
                f"an image of {height} x {width} pixels ({height * width / MEGA:.1f} "
                f"megapixels) is over this server's {self.limits.max_pixels / MEGA:g} "
                "(apply.max_megapixels): send it in parts, or to `denoise apply`",
            )
        if images.size == 0:
            return
        low, high = float(images.min()), float(images.max())
        margin = self.limits.value_margin
        if low < -margin or high > 1.0 + margin:
            raise Refused(
                400,
                f"values must be floats in [0, 1] (noisy ones at most {margin:g} outside it, "
                f"apply.value_margin), got {low:g} to {high:g}: divide 8-bit images by 255 "
                "and 16-bit ones by 65535",
            )

    def check_time(self) -> None:
        """Raise Refused (504) once the deadline has passed: the request's work stops."""
        if time.monotonic() <= self.deadline:
            return
        if not self.stopped:
            self.stopped = True
            print(
                f"denoise: a request passed the server's {self.limits.timeout_seconds:g} s "
                f"timeout ({_TIMEOUT_VARIABLE}); its work stopped "
                f"{time.monotonic() - self.arrived:.1f} s after it arrived",
                file=sys.stderr,
                flush=True,
            )
        raise Refused(504, f"not done within {self.limits.timeout_seconds:g} s; stopped")


_current: contextvars.ContextVar[Served | None] = contextvars.ContextVar(
    "denoise_served_request", default=None
)


def current() -> Served | None:
    """The request being served in this context; None outside the scoring server."""
    return _current.get()


def check_finite(images: np.ndarray) -> None:
    """Refuse NaN and infinite values (one would make the whole output NaN)."""
    if not np.isfinite(images).all():
        where = tuple(int(index) for index in np.argwhere(~np.isfinite(images))[0])
        raise Refused(400, f"NaN or infinite value at index {where}: send finite floats in [0, 1]")


def install(limits: Limits) -> bool:
    """In MLflow's scoring-server process, before its app is built: wrap the /invocations
    handler it will build with _guarded. Elsewhere, or where MLflow's server has no such hook
    (another version), do nothing and return False (the model still checks what it can)."""
    if _SERVER_MODEL_PATH not in os.environ:
        return False
    server = sys.modules.get("mlflow.pyfunc.scoring_server")
    if server is None or not hasattr(server, "_async_catch_mlflow_exception"):
        print(
            "denoise: this MLflow's scoring server cannot be guarded: request sizes are not "
            "limited and a request past its timeout runs on",
            file=sys.stderr,
        )
        return False
    setattr(server, "_async_catch_mlflow_exception", lambda handler: _guarded(handler, limits))  # noqa: B010
    return True


def _answer(status: int, message: str) -> Any:
    from fastapi.responses import Response

    body = json.dumps({"error_code": _CODES.get(status, "BAD_REQUEST"), "message": message})
    return Response(content=body, status_code=status, media_type="application/json")


def _quoted(message: str) -> str:
    """MLflow's error message as one line of at most QUOTED characters, without the input
    where it is known to quote it."""
    message = _QUOTING[0].sub("", message)
    message = _QUOTING[1].sub(" of the input with", message)
    line = " ".join(message.split())
    return line if len(line) <= QUOTED else line[: QUOTED - 3] + "..."


def _refusal(error: BaseException) -> Refused | None:
    """The Refused that caused error, where MLflow wrapped one raised by the model."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, Refused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def _read_body(request: Any, limit: int) -> None:
    """Read the body into the request (starlette keeps it for the handler), refusing one over
    limit bytes: by its Content-Length before reading, else once that much has come."""
    too_large = (
        f"the request holds more than this server's {limit / MEGA:g} MB "
        "(apply.max_request_megabytes): send fewer or smaller images per request"
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Refused(
                413, too_large.replace("more than", f"{int(declared) / MEGA:.1f} MB, over")
            )
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Refused(413, too_large)
    body = b"".join(chunks)
    if b"true" in body or b"false" in body:
        raise Refused(400, "true and false are no pixel values: send floats in [0, 1]")
    request._body = body


def _guarded(
    handler: Callable[[Any], Awaitable[Any]], limits: Limits
) -> Callable[[Any], Awaitable[Any]]:
    """MLflow's /invocations handler behind the limits; errors answered in one line."""
    from mlflow.exceptions import MlflowException

    @functools.wraps(handler)
    async def guarded(request: Any) -> Any:
        served = Served(limits, time.monotonic())
        try:
            await _read_body(request, limits.max_request_bytes)
            token = _current.set(served)
            try:
                response = await handler(request)
            finally:
                _current.reset(token)
        except Refused as error:
            return _answer(error.status, str(error))
        except MlflowException as error:
            refused = _refusal(error)
            if refused is not None:
                return _answer(refused.status, str(refused))
            return _answer(error.get_http_status_code(), _quoted(error.message))
        if response.status_code != 200:
            said = bytes(response.body).decode("utf-8", "replace")
            return _answer(response.status_code, _quoted(said))
        return response

    return guarded
