"""What people see of the tracked runs: the names of runs, the links that open them, the MLflow
UI's view of the experiment, and artifact locations that follow a moved repository."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from denoise.core.schema import INIT_PRETRAINED

# MLflow 3's UI opens an experiment on its GenAI view, where training runs do not show.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
# The experiment is model training: MLflow labels it so. Its UI (3.17) still opens on the GenAI
# view unless the link says workflowType=machine_learning (MODEL_TRAINING_VIEW) or the browser
# was switched to "Model training" once (it remembers).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# A view of the runs table the links open (viewStateShareKey): the headline metrics as columns.
VIEW_KEY = "denoise"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_COLUMNS = (
    "champion.test_psnr",
    "champion.photos_psnr",
    "champion.version",
    "test_psnr",
    "photos_psnr",
    "ms_frame",
)
VIEW = json.dumps({"selectedColumns": [f"metrics.`{name}`" for name in VIEW_COLUMNS]})


# Where a SQLite store records absolute artifact locations (MLflow 3's schema).
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"),
)


def relocate_artifacts(database: Path, recorded: str, location: str) -> int:
    """Point a local store's records at the artifact folder beside it, after the repository
    (with mlflow/) was moved or copied: MLflow's SQLite store keeps absolute file:// locations.
    Rewrites every location under `recorded` to the same path under `location`; returns the
    number of records changed."""
    import sqlite3

    changed = 0
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        for table, column in ARTIFACT_COLUMNS:
            cursor = connection.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                (location, len(recorded) + 1, recorded, len(recorded) + 1, f"{recorded}/"),
            )
            changed += cursor.rowcount
    return changed


def model_run_name(model: str, started: str) -> str:
    """A training run's name: the model and where its weights started (the init stage's words:
    "" for none, "models:/denoise@champion (version 3)", "pretrained (drunet_light.keras)", a
    file)."""
    if not started:
        return f"{model}: from scratch"
    version = re.search(r"\(version (\d+)\)$", started)
    if version:
        return f"{model}: fine-tune from v{version.group(1)}"
    if started.startswith(f"{INIT_PRETRAINED} "):
        return f"{model}: fine-tune from the shipped model"
    return f"{model}: fine-tune from {Path(started).name}"


def pipeline_run_name(trigger: str, trained: int, registry: dict[str, Any] | None) -> str:
    """The pipeline run's name once it ended: "pipeline: scheduled, 3 trained, champion v5".
    registry: registry.json of this run (None: register did not run)."""
    parts = [trigger, f"{trained} trained"]
    decisions = (registry or {}).get("decisions", [])
    moved = [d for d in decisions if d.get("holds") == "champion" and not d.get("earlier")]
    kept = [d for d in decisions if d.get("champion_version")]
    if moved:
        parts.append(f"champion v{moved[0]['version']}")
    elif kept:
        parts.append(f"champion v{kept[0]['champion_version']} kept")
    return "pipeline: " + ", ".join(parts)


def experiment_link(base: str, experiment_id: str) -> str:
    """The experiment's runs in the UI's model-training view, with the headline metrics as
    columns (VIEW), under base (the UI's URL)."""
    view = f"{MODEL_TRAINING_VIEW}&viewStateShareKey={VIEW_KEY}"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{view}"


def run_link(run_id: str) -> str:
    """Where the run is seen in the MLflow UI (`make ui` serves the local store)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    run = MlflowClient().get_run(run_id)
    uri = mlflow.get_tracking_uri()
    base = uri if uri.startswith("http") else "http://127.0.0.1:5000"
    experiment = run.info.experiment_id
    return f"{base.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}?{MODEL_TRAINING_VIEW}"
