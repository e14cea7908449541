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
from denoise.core.noise_level import NOISE_RANGE, sources_noise_range, trained_noise_range
from denoise.data.clips import CLIPS_MANIFEST
from denoise.data.evalsets import CLIP_SETS, CLIP_VALIDATION, load_set
from denoise.data.extract import load_clips_manifest, load_manifest
from denoise.data.roles import load_sources
from denoise.tracking.models import INIT_TAG, log_epoch, log_frames_inputs, log_trained_model
from denoise.tracking.runs import stage
from denoise.tracking.views import model_run_name
from denoise.training.distribution import data_parallel
from denoise.training.loop import _write_history, summarise, train_model
from denoise.training.noise import host_noise
from denoise.training.settings import model_init_from, training_noise
from denoise.training.stream import (
    ClipStream,
    FrameToFrameStream,
    NeighbourStream,
    PatchStream,
    clip_validation,
    frame_to_frame_validation,
    noisy_sources,
)


def check_supervision(params: Params, names: list[str], manifest: pd.DataFrame) -> None:
    """Raise ConfigError when a model's supervision has no sources to learn from: a clean one
    when every source is noisy, a noisy one when none is (the manifest's role column)."""
    noisy = noisy_sources(manifest)
    every = set(manifest["video"].unique())
    for name in names:
        supervision = params.train.supervision_of(name)
        own = f"train.variants.{name}.supervision" if name in params.train.variants else None
        setting = f"{own} or train.supervision" if own else "train.supervision"
        if supervision == "clean" and every and noisy >= every:
            raise ConfigError(
                f"{setting}: {name} learns from clean targets (supervision clean), but every "
                "source is noisy; set it to noisy"
            )
        if supervision == "noisy" and not noisy:
            raise ConfigError(
                f"{setting}: {name} learns from noisy sources (supervision noisy), but no "
                "source's role is noisy; set it to clean"
            )


def _noisy_stream(
    params: Params, name: str, manifest: pd.DataFrame, print_fn: Any = print
) -> FrameToFrameStream | NeighbourStream:
    """Model `name`'s stream from the noisy sources alone: frame-to-frame on the train clips of
    the noisy videos when there are any, else Neighbor2Neighbor on the noisy train frames."""
    frames_dir = Path(params.paths.frames)
    noisy = manifest[manifest["video"].isin(noisy_sources(manifest))]
    videos = noisy[noisy["source_kind"] == "video"]
    if videos.empty:
        train = noisy[noisy["split"] == "train"]
        for folder, rows in train.groupby("video"):
            if len(rows) == 1:
                print_fn(
                    f"{folder}: one noisy image; Neighbor2Neighbor learns from it alone "
                    "(from pairs of its own sub-images)"
                )
        return NeighbourStream(frames_dir, train, params)
    for video, rows in videos.groupby("video"):
        decoded = int(rows["frame_index"].max()) + 1
        if decoded < 3:
            raise DataError(
                f"{video}: a noisy video needs at least 3 frames for frame-to-frame training, "
                f"got {decoded}"
            )
    listed = (frames_dir / CLIPS_MANIFEST).is_file()
    clips = load_clips_manifest(frames_dir) if listed else None
    if clips is None or clips.empty:
        raise DataError(
            f"{videos['video'].iloc[0]}: frame-to-frame learns from runs of consecutive frames; "
            "set extract.clips.per_split > 0 and run `denoise extract`"
        )
    train = clips[(clips["split"] == "train") & clips["video"].isin(videos["video"])]
    for video in videos["video"].unique():
        if video not in set(train["video"]):
            raise DataError(
                f"{video}: no train clip of this noisy video; lower extract.clips.length "
                f"({params.extract.clips.length}) or raise extract.clips.per_split"
            )
    stills = sorted(set(noisy["video"]) - set(videos["video"]))
    if stills:
        print_fn(
            f"{name}: frame-to-frame on the noisy videos; the noisy image folders "
            f"({', '.join(stills)}) are left out"
        )
    return FrameToFrameStream(frames_dir, train, params, print_fn=print_fn)


def _held_out(
    params: Params, manifest: pd.DataFrame, print_fn: Any = print
) -> tuple[np.ndarray, np.ndarray] | None:
    """Held-out frame-to-frame pairs from the noisy videos' validation clips, or None (with a
    note) when they have none."""
    frames_dir = Path(params.paths.frames)
    clips = load_clips_manifest(frames_dir)
    chosen = clips[(clips["split"] == "validation") & clips["video"].isin(noisy_sources(manifest))]
    pairs = frame_to_frame_validation(frames_dir, chosen, params.train.without_clean)
    if pairs is None:
        print_fn(
            "no held-out frame-to-frame pairs (no validation clip of the noisy videos keeps "
            "enough pixels); epochs are chosen on the clean validation set"
        )
    return pairs


def _training_data(
    params: Params, name: str, manifest: pd.DataFrame
) -> tuple[PatchStream | ClipStream | FrameToFrameStream, tuple[np.ndarray, np.ndarray]]:
    """Model `name`'s training stream and (noisy, clean) validation pairs at
    noise.validation_sigma: the train frames and the validation set, or for a model on clips
    (train.on_clips) the train clips and windows of the validation clips. A model of
    supervision clean draws from the clean sources alone, one of noisy from the noisy ones."""
    frames_dir, evalsets = Path(params.paths.frames), Path(params.paths.evalsets)
    level = level_name("gaussian", params.noise.validation_sigma)
    noisy = noisy_sources(manifest)
    if params.train.supervision_of(name) == "noisy":
        clean, noisy_set, _ = load_set(evalsets, "validation")
        return _noisy_stream(params, name, manifest), (noisy_set[level], clean)
    noise = host_noise(training_noise(params, name), params.noise.camera)
    if not params.train.on_clips(name):
        clean, noisy_set, _ = load_set(evalsets, "validation")
        train = manifest[(manifest["split"] == "train") & ~manifest["video"].isin(noisy)]
        stream = PatchStream(frames_dir, train, params, host_noise=noise)
        return stream, (noisy_set[level], clean)
    if noise is not None:
        raise ConfigError(f"{name}: compressed training noise is for models on frames, not clips")
    window = params.train.window(name)
    clips = load_clips_manifest(frames_dir)
    clean, noisy_set, _ = load_set(evalsets, CLIP_VALIDATION, CLIP_SETS)
    train_clips = clips[(clips["split"] == "train") & ~clips["video"].isin(noisy)]
    stream = ClipStream(frames_dir, train_clips, params, window)
    return stream, clip_validation(clean, noisy_set[level], window)


def noise_range(params: Params, name: str, manifest: pd.DataFrame) -> list[float] | None:
    """The noise levels (0-255) model `name` learnt to remove, for its card: its training
    noise's sigma range, or for supervision noisy the range of its noisy sources' measured
    levels (sources.parquet); None where no such range is known."""
    if params.train.supervision_of(name) == "noisy":
        sources = load_sources(Path(params.paths.frames))
        learnt = sources[sources["source"].isin(noisy_sources(manifest))]
        found = sources_noise_range(learnt["noise_sigma"])
    else:
        found = trained_noise_range(dataclasses.asdict(training_noise(params, name)))
    return None if found is None else list(found)


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
    check_supervision(params, list(starts), manifest)
    summaries: dict[str, dict[str, Any]] = {}
    with stage(params, stage_name) as tracker:
        for name, (init, described) in starts.items():
            stream, validation = _training_data(params, name, manifest)
            held_out = None
            if isinstance(stream, FrameToFrameStream):
                held_out = _held_out(params, manifest)
            tags = {"denoise.model": name, INIT_TAG: described}
            with (
                tracker.child(
                    model_run_name(name, described), tags=tags, system_metrics=True
                ) as run_id,
                data_parallel(params.train.batch_size),  # every device of the node
            ):
                clips = (
                    stream.clips if isinstance(stream, ClipStream | FrameToFrameStream) else None
                )
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
                    held_out=held_out,
                )
            summary = summaries[name] = {
                **summarise(name, params, model, state, stream),
                NOISE_RANGE: noise_range(params, name, manifest),
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
