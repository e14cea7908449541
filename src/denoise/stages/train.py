"""train stage: fit a model of train.models (train@<model> in dvc.yaml); write it, its summary
and its training history."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from denoise.core.atomic import atomic_path, write_json
from denoise.core.config import Params
from denoise.core.errors import ConfigError, DataError
from denoise.core.locations import init_file
from denoise.core.locks import exclusive
from denoise.core.noise import level_name
from denoise.data.evalsets import CLIP_SETS, CLIP_VALIDATION, load_set
from denoise.data.extract import load_clips_manifest, load_manifest
from denoise.data.roles import clean_targets
from denoise.tracking.models import INIT_TAG, log_trained_model
from denoise.tracking.runs import log_epoch, log_frames_inputs, model_run_name, stage
from denoise.training.distribution import data_parallel
from denoise.training.loop import _write_history, summarise, train_model
from denoise.training.noise import host_noise
from denoise.training.settings import model_init_from, training_noise
from denoise.training.stream import ClipStream, PatchStream, clip_validation


def _training_data(
    params: Params, name: str, manifest: pd.DataFrame
) -> tuple[PatchStream | ClipStream, tuple[np.ndarray, np.ndarray]]:
    """Model `name`'s training stream and (noisy, clean) validation pairs at
    noise.validation_sigma: the train frames and the validation set, or for a model on clips
    (train.on_clips) the train clips and windows of the validation clips."""
    frames_dir, evalsets = Path(params.paths.frames), Path(params.paths.evalsets)
    level = level_name("gaussian", params.noise.validation_sigma)
    noise = host_noise(training_noise(params, name), params.noise.camera)
    if not params.train.on_clips(name):
        clean, noisy, _ = load_set(evalsets, "validation")
        targets = clean_targets(manifest)  # a noisy source's frames are never clean targets
        rows = targets[targets["split"] == "train"]
        stream = PatchStream(frames_dir, rows, params, host_noise=noise)
        return stream, (noisy[level], clean)
    if noise is not None:
        raise ConfigError(f"{name}: compressed training noise is for models on frames, not clips")
    window = params.train.window(name)
    clips = clean_targets(load_clips_manifest(frames_dir))
    clean, noisy, _ = load_set(evalsets, CLIP_VALIDATION, CLIP_SETS)
    stream = ClipStream(frames_dir, clips[clips["split"] == "train"], params, window)
    return stream, clip_validation(clean, noisy[level], window)


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    models: dict[str, dict[str, Any]]


def _init_weights(params: Params, name: str) -> tuple[Path | None, str]:
    """The starting weights the init stage resolved for `name`, and what they are in words;
    (None, "") when it trains from scratch (no init_from)."""
    if model_init_from(params.train, name) is None:
        return None, ""
    weights = init_file(params, name, ".keras")
    try:
        start = json.loads(init_file(params, name).read_text())["init"]
    except (OSError, ValueError, KeyError):
        start = None
    if not start or not weights.is_file():
        raise DataError(f"{weights}: missing; run `denoise init` first (init_from of {name})")
    return weights, str(start["resolved"])


def run(params: Params, model: str | None = None) -> TrainSummary:
    """Train `model` (None: every model of train.models); write each one's .keras file, its
    summary and its training history.

    Each model is one MLflow child run (per-epoch metrics and sample images, then the model
    itself); its id is kept in models/<name>.json for the evaluate and register stages.
    One trainer per tree: a second one stops at once, naming the first's pid.
    """
    if model is not None and model not in params.train.models:
        raise ConfigError(
            f"--model {model}: not one of train.models ({', '.join(params.train.models)})"
        )
    names = params.train.models if model is None else [model]
    starts = {name: _init_weights(params, name) for name in names}
    with exclusive(params.paths.checkpoints, "denoise train"):
        return _train(params, starts, "train" if model is None else f"train@{model}")


def _train(
    params: Params, starts: dict[str, tuple[Path | None, str]], stage_name: str
) -> TrainSummary:
    frames_dir = Path(params.paths.frames)
    manifest = load_manifest(frames_dir)
    summaries: dict[str, dict[str, Any]] = {}
    with stage(params, stage_name) as tracker:
        for name, (init, described) in starts.items():
            stream, validation = _training_data(params, name, manifest)
            tags = {"denoise.model": name, INIT_TAG: described}
            with (
                tracker.child(
                    model_run_name(name, described), tags=tags, system_metrics=True
                ) as run_id,
                data_parallel(params.train.batch_size),  # every device of the node
            ):
                clips = stream.clips if isinstance(stream, ClipStream) else None
                log_frames_inputs(params, manifest, clips)
                model, state = train_model(
                    name,
                    params,
                    stream,
                    validation,
                    Path(params.paths.checkpoints) / name,
                    epoch_logger=log_epoch,
                    num_samples=params.tracking.num_samples,
                    init=init,
                )
            summary = summaries[name] = {
                **summarise(name, params, model, state, stream),
                "mlflow_run_id": run_id,
            }
            path = Path(params.paths.models) / f"{name}.keras"
            with atomic_path(path) as staging:
                model.save(staging)
            write_json(path.with_suffix(".json"), summary)
            history = Path(params.paths.train_reports) / f"{name}.csv"
            _write_history(history, state.history)
            with tracker.resume(run_id):
                log_trained_model(params, model, path, summary, history)
            shutil.rmtree(Path(params.paths.checkpoints) / name, ignore_errors=True)
    return TrainSummary(models=summaries)
