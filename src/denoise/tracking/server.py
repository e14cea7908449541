"""The tracking server as a service: is it there, and what a failed request means to a user.

check_server asks the server (with the user's credentials) before a stage does anything, and,
on a server with MLflow's basic-auth app, whether the user may do what a pipeline run does;
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
# What a pipeline run does: runs in the experiment (EDIT), versions of the registered models and
# their aliases, the challenger's deleted (MANAGE). The team admin grants both (docs/team.md).
_EXPERIMENT_NEEDS: tuple[str, ...] = ("EDIT", "MANAGE")
_MODEL_NEEDS: tuple[str, ...] = ("MANAGE",)


def grant_fix(user: str) -> str:
    """The command that gives an MLflow user of the team what a pipeline run needs."""
    return f"the team admin grants it with: infra/team/team.sh grant {user}"


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
    if user:
        check_permissions(params, uri, user, password or "")


def check_permissions(params: Params, uri: str, user: str, password: str) -> None:
    """Raise ServiceError, one line naming the permission and the command that grants it, when
    MLflow user `user` may not write runs to the experiment or manage the registered models.
    An admin, and a server without the basic-auth app (no permissions API), pass."""
    import requests

    def get(path: str, **query: str) -> requests.Response:
        return requests.get(
            f"{uri.rstrip('/')}/api/{path}",
            params=query,
            auth=(user, password),
            timeout=params.services.timeout_seconds,
        )

    try:
        found = get("2.0/mlflow/users/get", username=user)
        if found.status_code == 404 or not found.ok:
            return  # no basic-auth app: nothing to check
        if found.json().get("user", {}).get("is_admin"):
            return
        checks: list[tuple[str, str, str, tuple[str, ...]]] = []
        experiment = get(
            "2.0/mlflow/experiments/get-by-name", experiment_name=params.tracking.experiment
        )
        if experiment.ok:  # none yet: the run creates it, and its creator may write to it
            experiment_id = str(experiment.json()["experiment"]["experiment_id"])
            what = f"experiment {params.tracking.experiment}"
            checks.append(("experiment", experiment_id, what, _EXPERIMENT_NEEDS))
        for model in (params.register.model_name, params.register.video_model_name):
            answer = get("2.0/mlflow/registered-models/get", name=model)
            if answer.status_code == 403:
                # MLflow answers a non-admin 403 for a model that does not exist, too.
                raise ServiceError(
                    f"MLflow tracking server {uri}: user {user} may not read registered model "
                    f"{model} (HTTP 403: no READ permission, or no such model); "
                    f"{grant_fix(user)} (it also creates the model)"
                )
            if answer.ok:
                checks.append(
                    ("registered_model", model, f"registered model {model}", _MODEL_NEEDS)
                )
        for resource_type, resource_id, what, needed in checks:
            answer = get(
                "3.0/mlflow/users/permissions/get",
                username=user,
                resource_type=resource_type,
                resource_id=resource_id,
            )
            if not answer.ok:
                return  # a server without the per-user permissions API
            permission = answer.json().get("permission", "")
            if permission not in needed:
                raise ServiceError(
                    f"MLflow tracking server {uri}: user {user} has {permission or 'no'} "
                    f"permission on {what}, a pipeline run needs {needed[0]}; {grant_fix(user)}"
                )
    except (requests.RequestException, ValueError, KeyError):
        return  # the server answered the health check: a stage's own request reports the rest


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
