"""The tracking server as a service: is it there, and what a failed request means to a user.

check_server asks the server (with the user's credentials) before a stage does anything;
tracking_error turns an MLflow request that failed for good into the one line the CLI prints.
"""

from __future__ import annotations

import os

from denoise.core import services
from denoise.core.config import Params
from denoise.core.errors import DenoiseError, DiskFullError, ServiceError
from denoise.core.locations import tracking_uri

_SERVER_FIX = "start it, or unset MLFLOW_TRACKING_URI to log to the local store"
_CREDENTIALS_FIX = "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"


def check_server(params: Params) -> None:
    """Raise ServiceError, one line naming the URI and the fix, unless the tracking server
    answers (with the credentials given) within params.services' bounds; a local store passes.
    """
    uri = tracking_uri(params)
    if not uri.startswith(("http://", "https://")):
        return
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    service = services.Service(
        name="MLflow tracking server",
        url=uri,
        health_path="/api/2.0/mlflow/experiments/search?max_results=1",
        fix=_SERVER_FIX,
        auth=(user, password or "") if user else None,
        credentials_fix=_CREDENTIALS_FIX if not user else "check MLFLOW_TRACKING_PASSWORD",
    )
    services.check(service, params.services)


def tracking_error(error: BaseException) -> DenoiseError | None:
    """The one line for a tracking request that failed for good: a server that stopped
    answering after its retries, or a local store that cannot be written (a full disk, the
    file-size limit); None for any other error."""
    text = str(error)
    if type(error).__module__.split(".")[0] not in ("mlflow", "requests", "urllib3", "sqlalchemy"):
        return None
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "the local tracking store"
    if "sqlite3.OperationalError" in text:
        reason = text.split("sqlite3.OperationalError) ")[-1].splitlines()[0]
        return DiskFullError(
            f"MLflow tracking store {uri}: {reason} while writing (a full disk or the file-size "
            "limit); free space and run again"
        )
    if "Max retries exceeded" not in text and "API request to" not in text:
        return None
    reason = "connection refused" if "Connection refused" in text else text.splitlines()[0][:160]
    return ServiceError(f"MLflow tracking server {uri} stopped answering ({reason}); {_SERVER_FIX}")
