"""Cheap reads of the tracking store, without MLflow, for the stages that run every time.

Importing MLflow and opening its SQLite store takes seconds, and the preflight and init stages
run on every `dvc repro`. When nothing changed they need two facts: whether a run is still
RUNNING on this host, and which version an alias names. A local SQLite store is read directly,
read-only (MLflow's tables `runs`, `tags` and `registered_model_aliases`); a server answers
through its REST API. Any other store, or a read that fails, raises Unknown: the caller then
asks MLflow, as it would without this module.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SQLITE = "sqlite:///"
_TIMEOUT_SECONDS = 5.0


class Unknown(Exception):
    """The store cannot be read cheaply: ask MLflow."""


@contextlib.contextmanager
def _database(uri: str) -> Iterator[sqlite3.Connection | None]:
    """The SQLite store read-only; None when its file does not exist yet (an empty store)."""
    path = Path(uri.removeprefix(_SQLITE))
    if not path.is_file():
        yield None
        return
    try:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error as error:
        raise Unknown(str(error)) from None
    try:
        yield connection
    except sqlite3.Error as error:  # another schema, or a locked database
        raise Unknown(str(error)) from None
    finally:
        connection.close()


def _rest(uri: str, method: str, path: str, **request: Any) -> dict[str, Any] | None:
    """A tracking server's JSON answer to /api/2.0/mlflow/<path>; None for
    RESOURCE_DOES_NOT_EXIST."""
    import requests

    headers = {}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user else None
    try:
        response = requests.request(
            method,
            f"{uri.rstrip('/')}/api/2.0/mlflow/{path}",
            headers=headers,
            auth=auth,
            timeout=_TIMEOUT_SECONDS,
            **request,
        )
        answer: dict[str, Any] = response.json()
    except (requests.RequestException, ValueError) as error:
        raise Unknown(str(error)) from None
    if answer.get("error_code") == "RESOURCE_DOES_NOT_EXIST":
        return None
    if not response.ok:
        raise Unknown(f"{response.status_code}: {answer.get('message', '')}")
    return answer


def _kind(uri: str) -> str:
    if os.environ.get("MLFLOW_REGISTRY_URI"):  # the registry lives elsewhere
        raise Unknown("MLFLOW_REGISTRY_URI is set")
    if uri.startswith(_SQLITE):
        return "sqlite"
    if uri.startswith(("http://", "https://")):
        return "rest"
    raise Unknown(f"{uri}: neither a local SQLite store nor a server")


def alias_version(uri: str, name: str, alias: str) -> str | None:
    """The version registered model `name`'s alias names in the store at uri (None: no such
    model, or no store yet; a model without the alias is Unknown, as MLflow's answer to it is
    an error of another kind)."""
    if _kind(uri) == "sqlite":
        with _database(uri) as database:
            if database is None:
                return None
            row = database.execute(
                "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                (name, alias),
            ).fetchone()
            if row is not None:
                return str(row[0])
            query = "SELECT 1 FROM registered_models WHERE name = ?"
            if database.execute(query, (name,)).fetchone() is not None:
                raise Unknown(f"registered model {name} has no alias {alias}")
            return None
    answer = _rest(uri, "GET", "registered-models/alias", params={"name": name, "alias": alias})
    return None if answer is None else str(answer["model_version"]["version"])


def has_running_runs(uri: str, experiment: str, tag: str, value: str) -> bool:
    """Whether the experiment holds a RUNNING run tagged tag=value (False: no store yet)."""
    if _kind(uri) == "sqlite":
        with _database(uri) as database:
            if database is None:
                return False
            row = database.execute(
                "SELECT 1 FROM runs JOIN experiments USING (experiment_id) "
                "JOIN tags USING (run_uuid) WHERE runs.status = 'RUNNING' "
                "AND experiments.name = ? AND tags.key = ? AND tags.value = ? LIMIT 1",
                (experiment, tag, value),
            ).fetchone()
            return row is not None
    found = _rest(uri, "GET", "experiments/get-by-name", params={"experiment_name": experiment})
    if found is None:
        return False
    search = {
        "experiment_ids": [found["experiment"]["experiment_id"]],
        "filter": f"attributes.status = 'RUNNING' and tags.`{tag}` = '{value}'",
        "max_results": 1,
    }
    answer = _rest(uri, "POST", "runs/search", json=search)
    return bool(answer and answer.get("runs"))
