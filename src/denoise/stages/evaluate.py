"""evaluate stage: PSNR, SSIM and time per frame of every method on the fixed evaluation sets.

Reads the sets and the trained models, scores them with denoise.evaluation, writes the
metrics, tables, per-image scores and comparison images, and logs them to MLflow.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

from denoise.core.atomic import atomic_directory, atomic_path, write_json, write_text
from denoise.core.config import Params
from denoise.core.errors import DataError
from denoise.data.evalsets import CLIP_SETS, CLIP_VALIDATION, list_sets, load_set
from denoise.data.video import write_image
from denoise.evaluation.adapters import model_denoiser, window_denoiser
from denoise.evaluation.baselines import image_baselines
from denoise.evaluation.scoring import BatchDenoiser
from denoise.evaluation.sets import score_clip_sets, score_image_sets
from denoise.evaluation.summary import (
    clip_table,
    conventions,
    headline_level,
    headline_sets,
    method_metrics,
    metrics_table,
    psnr_per_sigma,
    short_metrics,
)
from denoise.models.build import load_model
from denoise.tracking.runs import StageTracker, stage

# Sets scored here; "validation" is used by training for model selection, so it is not.
VALIDATION = "validation"


def _load_models(params: Params) -> dict[str, tuple[Any, dict[str, Any]]]:
    models = {}
    for name in params.train.models:
        path = Path(params.paths.models) / f"{name}.keras"
        if not path.is_file():
            raise DataError(f"{path}: missing; run `denoise train` first")
        info = json.loads(path.with_suffix(".json").read_text())
        models[name] = (load_model(path), info)
    return models


@dataclasses.dataclass(frozen=True)
class EvaluateSummary:
    metrics: dict[str, Any]
    table: str


def run(params: Params) -> EvaluateSummary:
    """Score baselines and trained models on every evaluation set except validation.

    Logs the classical baselines as one MLflow child run, each model's scores into its own
    training run, and the tables to the pipeline's parent run.
    """
    with stage(params, "evaluate") as tracker:
        summary = _evaluate(params)
        _log_evaluation(tracker, params, summary.metrics)
    return summary


def _log_evaluation(tracker: StageTracker, params: Params, metrics: dict[str, Any]) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    evaluation = Path(params.paths.evaluation)
    sets, level = headline_sets(params), headline_level(params)
    # Few metrics with short names per run (the runs table's columns, one chart each); every
    # score in scores.json beside them.
    with tracker.child("baselines", tags={"denoise.kind": "baselines"}):
        for method in params.evaluate.methods:
            headline = short_metrics(metrics, method, sets, level)
            mlflow.log_metrics({f"{method}.{key}": value for key, value in headline.items()})
        every = {method: method_metrics(metrics, method) for method in params.evaluate.methods}
        mlflow.log_dict(every, "scores.json")
        mlflow.log_text((evaluation / "metrics.md").read_text(), "metrics.md")
    for name, info in metrics["models"].items():
        shown = [*evaluation.glob(f"triptychs/*/*/{name}-*.png")]
        shown += evaluation.glob(f"strips/*/*/{name}.png")  # clip sets (extract.clips)
        shown += evaluation.glob(f"strips/*/*/{name}-vs-*.png")  # a temporal model's
        files = [(image, f"evaluation/{image.relative_to(evaluation).parent}") for image in shown]
        headline = short_metrics(metrics, name, sets, level)
        scores = {"scores.json": method_metrics(metrics, name)}
        run_id = info.get("mlflow_run_id", "")
        try:
            mlflow.tracking.MlflowClient().get_run(run_id)
        except MlflowException:  # trained against another tracking store
            with tracker.child(name, tags={"denoise.model": name}) as run_id:
                pass
        tracker.log_later(run_id, headline, scores, sorted(files))
    tracker.log_to_parent(
        summary=metrics,
        texts={"metrics.md": (evaluation / "metrics.md").read_text()},
        folders={params.paths.psnr_per_sigma: "psnr_per_sigma"},
        metrics={
            f"{name}.test_psnr": value
            for name in metrics["models"]
            if (value := short_metrics(metrics, name, sets, level).get("test_psnr")) is not None
        },
    )


def _denoisers(
    params: Params, models: dict[str, tuple[Any, dict[str, Any]]]
) -> tuple[dict[str, BatchDenoiser], dict[str, BatchDenoiser]]:
    """The image methods (evaluate.methods' classical ones, then the single-frame models) and
    the temporal models (train.window > 1), scored on the clip sets only."""
    methods = image_baselines(params.evaluate.methods, params.evaluate)
    temporal: dict[str, BatchDenoiser] = {}
    for name, (model, _) in models.items():
        denoiser = model_denoiser(
            model, params.train.batch_size, params.apply.self_ensemble, params.apply.precision
        )
        window = params.train.window(name)
        if window > 1:
            temporal[name] = window_denoiser(denoiser, window)
        else:
            methods[name] = denoiser
    return methods, temporal


def _evaluate(params: Params) -> EvaluateSummary:
    evalsets_dir = Path(params.paths.evalsets)
    models = _load_models(params)
    methods, temporal = _denoisers(params, models)
    names = [name for name in list_sets(evalsets_dir) if name != VALIDATION]
    sets = score_image_sets(params, {name: load_set(evalsets_dir, name) for name in names}, methods)
    clip_names = [name for name in list_sets(evalsets_dir, CLIP_SETS) if name != CLIP_VALIDATION]
    clip_sets = {name: load_set(evalsets_dir, name, CLIP_SETS) for name in clip_names}
    clips = score_clip_sets(params, clip_sets, {**methods, **temporal})
    metrics: dict[str, Any] = {"sets": sets.sets, "conventions": conventions(params)}
    if clips.sets:
        metrics["clip_sets"] = clips.sets
    model_info = {name: info for name, (_, info) in models.items()}
    metrics["models"] = model_info
    table = metrics_table(metrics, model_info) + clip_table(metrics.get("clip_sets", {}))
    with atomic_directory(params.paths.evaluation) as staging:
        for relative, image in sets.images + clips.images:
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            write_image(staging / relative, image)
        rows = sets.rows
        with atomic_path(staging / "per_image.csv") as path, path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["set"])
            writer.writeheader()
            writer.writerows(rows)
        write_text(staging / "metrics.md", table)
    with atomic_directory(params.paths.psnr_per_sigma) as staging:
        for relative, text in psnr_per_sigma(metrics, params.noise.evaluation.gaussian).items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_text(text)
    write_json(params.paths.metrics, metrics)
    return EvaluateSummary(metrics=metrics, table=table)
