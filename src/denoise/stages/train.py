"""train stage: fit every model of the active profile; write models and training histories."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import keras

from denoise.core.atomic import atomic_directory, write_json
from denoise.core.config import Params
from denoise.core.errors import DataError
from denoise.core.locations import SOURCES_JSON
from denoise.core.locks import exclusive
from denoise.core.noise import level_name
from denoise.data.evalsets import load_set
from denoise.data.extract import load_manifest
from denoise.tracking.models import INIT_TAG, log_trained_model
from denoise.tracking.runs import log_epoch, log_frames_inputs, stage
from denoise.training.distribution import data_parallel
from denoise.training.loop import _write_history, summarise, train_model
from denoise.training.stream import PatchStream


def _init_file(params: Params, name: str, sources: dict[str, Any]) -> Path | None:
    """The starting weights the init stage resolved for `name`, if its init_from names any."""
    if params.train.init_from(name) is None:
        return None
    path = Path(params.paths.init) / f"{name}.keras"
    if name not in sources or not path.is_file():
        raise DataError(f"{path}: missing; run `denoise init` first (init_from of {name})")
    return path


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    models: dict[str, dict[str, Any]]


def run(params: Params) -> TrainSummary:
    """Train every model in params.train.models; write models and training histories.

    Each model is one MLflow child run (per-epoch metrics and sample images, then the model
    itself); its id is kept in models/<name>.json for the evaluate and register stages.
    One trainer per tree: a second one stops at once, naming the first's pid.
    """
    with exclusive(params.paths.checkpoints, "denoise train"):
        return _train(params)


def _train(params: Params) -> TrainSummary:
    frames_dir = Path(params.paths.frames)
    manifest = load_manifest(frames_dir)
    clean, noisy, _ = load_set(Path(params.paths.evalsets), "validation")
    validation_level = level_name("gaussian", params.noise.validation_sigma)
    validation = (noisy[validation_level], clean)
    train_rows = manifest[manifest["split"] == "train"]
    init_dir = Path(params.paths.init)
    sources = json.loads((init_dir / SOURCES_JSON).read_text()) if init_dir.is_dir() else {}
    summaries: dict[str, dict[str, Any]] = {}
    histories: dict[str, list[dict[str, float]]] = {}
    trained: dict[str, keras.Model] = {}
    with stage(params, "train") as tracker:
        for name in params.train.models:
            stream = PatchStream(frames_dir, train_rows, params)
            checkpoint_dir = Path(params.paths.checkpoints) / name
            init = _init_file(params, name, sources)
            tags = {"denoise.model": name, INIT_TAG: sources.get(name, {}).get("resolved", "")}
            with (
                tracker.child(name, tags=tags, system_metrics=True) as run_id,
                data_parallel(params.train.budget(name).batch_size),  # every device of the node
            ):
                log_frames_inputs(params, manifest)
                model, state = train_model(
                    name,
                    params,
                    stream,
                    validation,
                    checkpoint_dir,
                    epoch_logger=log_epoch,
                    num_samples=params.tracking.num_samples,
                    init=init,
                )
            trained[name] = model
            summaries[name] = {
                **summarise(name, params, model, state, stream),
                "mlflow_run_id": run_id,
            }
            histories[name] = state.history
        with atomic_directory(params.paths.models) as staging:
            for name, model in trained.items():
                model.save(staging / f"{name}.keras")
                write_json(staging / f"{name}.json", summaries[name])
        with atomic_directory(params.paths.train_reports) as staging:
            for name in trained:
                _write_history(staging / f"{name}.csv", histories[name])
        for name, model in trained.items():
            with tracker.resume(summaries[name]["mlflow_run_id"]):
                log_trained_model(
                    params,
                    model,
                    Path(params.paths.models) / f"{name}.keras",
                    summaries[name],
                    Path(params.paths.train_reports) / f"{name}.csv",
                )
    for name in trained:
        shutil.rmtree(Path(params.paths.checkpoints) / name, ignore_errors=True)
    return TrainSummary(models=summaries)
