"""evaluate stage: PSNR, SSIM and time per frame of every method on the fixed evaluation sets."""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from denoise.core.atomic import atomic_directory, atomic_path, write_json, write_text
from denoise.core.baselines import baseline, bm4d_video
from denoise.core.config import Params
from denoise.core.errors import DataError
from denoise.core.images import clip_strip, triptych
from denoise.core.markdown import clip_table, markdown_table
from denoise.core.metrics import psnr, ssim, temporal_psnr
from denoise.core.noise import level_name
from denoise.core.progress import progress
from denoise.core.temporal import channel_windows
from denoise.data.evalsets import CLIP_SETS, CLIP_VALIDATION, list_sets, load_set
from denoise.data.video import write_image
from denoise.models.build import load_model, required_multiple
from denoise.models.precision import at_precision
from denoise.serving import tiling
from denoise.tracking.runs import StageTracker, stage

# Sets scored here; "validation" is used by training for model selection, so it is not.
VALIDATION = "validation"
# Methods that see a whole clip at once (config.VIDEO_BASELINE_METHODS), scored on the clip sets
# only, when evaluate.methods names them (at evaluate.bm3d_levels).
VIDEO_METHODS = {"bm4d": bm4d_video}
BatchDenoiser = Callable[[np.ndarray, float], np.ndarray]


@dataclasses.dataclass(frozen=True)
class MethodResult:
    psnr: list[float]
    ssim: list[float]
    ms_per_frame: float
    outputs: np.ndarray  # the first few denoised images, for triptychs


def score(
    clean: np.ndarray, noisy: np.ndarray, sigma: float, denoise_batch: BatchDenoiser, keep: int
) -> MethodResult:
    """Denoise a stack of images and score each against its clean original.

    clean, noisy: float32 (N, H, W, 3); sigma on the 0-255 scale (the level a method is told).
    """
    start = time.perf_counter()
    denoised = denoise_batch(noisy, sigma)
    seconds = time.perf_counter() - start
    return MethodResult(
        psnr=[psnr(reference, image) for reference, image in zip(clean, denoised, strict=True)],
        ssim=[ssim(reference, image) for reference, image in zip(clean, denoised, strict=True)],
        ms_per_frame=1000.0 * seconds / max(len(noisy), 1),
        outputs=denoised[:keep],
    )


def _told_sigma(level_info: dict[str, Any]) -> float:
    """The noise level a method is told: the declared sigma of a Gaussian level, else the
    set's measured one."""
    return float(
        level_info["level"] if level_info["kind"] == "gaussian" else level_info["empirical_sigma"]
    )


def score_clips(
    clean: np.ndarray, noisy: np.ndarray, sigma: float, denoise_clip: BatchDenoiser
) -> tuple[dict[str, float], np.ndarray]:
    """Denoise each clip whole and score it: PSNR and SSIM per frame, tPSNR per clip, each
    then averaged; ms per frame. Returns the scores and the first clip denoised.

    clean, noisy: float32 (N, T, H, W, 3) clips; denoise_clip maps one (T, H, W, 3) clip (a
    frame method sees its frames as a stack of images).
    """
    frame_psnr, frame_ssim, clip_tpsnr = [], [], []
    outputs: list[np.ndarray] = []
    seconds = 0.0
    for reference, corrupted in zip(clean, noisy, strict=True):
        start = time.perf_counter()
        denoised = denoise_clip(corrupted, sigma)
        seconds += time.perf_counter() - start
        frame_psnr += [psnr(frame, out) for frame, out in zip(reference, denoised, strict=True)]
        frame_ssim += [ssim(frame, out) for frame, out in zip(reference, denoised, strict=True)]
        clip_tpsnr.append(temporal_psnr(reference, denoised))
        if not outputs:
            outputs.append(denoised)
    scores = {
        "psnr": float(np.mean(frame_psnr)),
        "ssim": float(np.mean(frame_ssim)),
        "tpsnr": float(np.mean(clip_tpsnr)),
        "ms_per_frame": 1000.0 * seconds / max(len(frame_psnr), 1),
        "clips": len(clean),
    }
    return scores, outputs[0]


def _evaluate_clips(
    params: Params,
    methods: dict[str, BatchDenoiser],
    evalsets_dir: Path,
    images: list[tuple[str, np.ndarray]],
) -> dict[str, Any]:
    """Every method on the test clips (extract.clips): the frame methods frame by frame, the
    video methods that evaluate.methods names (BM4D) on whole clips; BM3D and BM4D at
    evaluate.bm3d_levels only. Adds each method's first clip at noise.validation_sigma to
    images as a strip (clip_strip), and for each temporal model a strip noisy | best
    single-frame model | it | clean."""
    heavy, limited = {"bm3d", *VIDEO_METHODS}, params.evaluate.bm3d_levels  # []: every level
    video = {name: VIDEO_METHODS[name] for name in params.evaluate.methods if name in VIDEO_METHODS}
    shown = level_name("gaussian", params.noise.validation_sigma)
    scored: dict[str, Any] = {}
    for set_name in list_sets(evalsets_dir, CLIP_SETS):
        if set_name == CLIP_VALIDATION:
            continue
        clean, noisy_levels, info = load_set(evalsets_dir, set_name, CLIP_SETS)
        levels: dict[str, Any] = {}
        scored[set_name] = {
            "clips": clean.shape[0],
            "frames": clean.shape[1],
            "height": clean.shape[2],
            "width": clean.shape[3],
            "levels": levels,
        }
        jobs = [
            (level, method, denoise)
            for level in info["levels"]
            for method, denoise in {**methods, **video}.items()
            if method not in heavy or not limited or level in limited
        ]
        first_clips: dict[str, np.ndarray] = {}  # each method's first clip at the shown level
        for level, method, denoise in progress(jobs, description=f"evaluate {set_name}"):
            scores, denoised = score_clips(
                clean, noisy_levels[level], _told_sigma(info["levels"][level]), denoise
            )
            levels.setdefault(level, {})[method] = scores
            if level == shown and params.evaluate.num_triptychs > 0:
                first_clips[method] = denoised
                strip = clip_strip(noisy_levels[level][0], denoised, clean[0])
                images.append((f"strips/{set_name}/{level}/{method}.png", strip))
        strips = comparison_strips(params, first_clips, levels.get(shown, {}))
        for name, (single, temporal) in strips.items():
            columns = (noisy_levels[shown][0], single, temporal, clean[0])
            images.append((f"strips/{set_name}/{shown}/{name}.png", clip_strip(*columns)))
    return scored


def comparison_strips(
    params: Params, first_clips: dict[str, np.ndarray], scores: dict[str, Any]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each temporal model with a first clip: {"<model>-vs-<best single-frame model>":
    (that model's clip, the temporal one's)}, the best by PSNR in scores; none without a
    single-frame model."""
    trained = [name for name in params.train.models if name in first_clips]
    single = [name for name in trained if params.train.window(name) == 1]
    if not single:
        return {}
    best = max(single, key=lambda name: scores[name]["psnr"])
    return {
        f"{name}-vs-{best}": (first_clips[best], first_clips[name])
        for name in trained
        if params.train.window(name) > 1
    }


def per_image(function: Callable[[np.ndarray, float], np.ndarray]) -> BatchDenoiser:
    """A one-image denoiser applied to each image of a stack in turn."""
    return lambda noisy, sigma: np.stack([function(image, sigma) for image in noisy])


def model_denoiser(
    model: Any, batch_size: int, ensemble: bool = False, precision: str = "float32"
) -> BatchDenoiser:
    """A model on whole images in batches; ensemble: its x8 self-ensemble
    (tiling.self_ensemble); precision: what it computes in (precision.at_precision)."""
    model = at_precision(model, precision)

    try:
        multiple = required_multiple(model)
    except ValueError:  # a dense_ae whose patch is no multiple of its stride: whole frames only
        multiple = 1

    def denoise_batch(noisy: np.ndarray, sigma: float) -> np.ndarray:
        # The whole image as one tile, reflect-padded to the model's multiple and cropped back,
        # through the compiled call `denoise apply` makes (faster than model.predict's per-call
        # setup on small sets).
        tile = max(*noisy.shape[1:3], 16) + multiple
        return tiling.denoise_batch(model, noisy, tile, 0, batch_size, multiple, ensemble)

    return denoise_batch


def window_denoiser(frame_denoiser: BatchDenoiser, window: int) -> BatchDenoiser:
    """A temporal model's denoiser of one clip (T, H, W, 3): every frame from the window of
    frames around it, the ends reflected (core.temporal); frame_denoiser: model_denoiser of
    the model, which takes windows stacked on the channel axis."""
    return lambda clip, sigma: frame_denoiser(np.stack(list(channel_windows(clip, window))), sigma)


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


def method_metrics(metrics: dict[str, Any], method: str) -> dict[str, float]:
    """A method's scores as flat MLflow metrics: {"test.gaussian-25.psnr": 29.4, ...}."""
    flat = {}
    for set_name, set_metrics in {**metrics["sets"], **metrics.get("clip_sets", {})}.items():
        for level, level_metrics in set_metrics["levels"].items():
            for key in ("psnr", "ssim", "tpsnr", "ms_per_frame"):
                if key in level_metrics.get(method, {}):
                    flat[f"{set_name}.{level}.{key}"] = level_metrics[method][key]
    return flat


def _log_evaluation(tracker: StageTracker, params: Params, metrics: dict[str, Any]) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    evaluation = Path(params.paths.evaluation)
    with tracker.child("baselines", tags={"denoise.kind": "baselines"}):
        for method in params.evaluate.methods:
            mlflow.log_metrics(
                {f"{method}.{key}": value for key, value in method_metrics(metrics, method).items()}
            )
        mlflow.log_text((evaluation / "metrics.md").read_text(), "metrics.md")
    for name, info in metrics["models"].items():
        run_id = info.get("mlflow_run_id", "")
        try:
            mlflow.tracking.MlflowClient().get_run(run_id)
            run: Any = tracker.resume(run_id)
        except MlflowException:  # trained against another tracking store
            run = tracker.child(name, tags={"denoise.model": name})
        with run:
            mlflow.log_metrics(method_metrics(metrics, name))
            shown = [*evaluation.glob(f"triptychs/*/*/{name}-*.png")]
            shown += evaluation.glob(f"strips/*/*/{name}.png")  # clip sets (extract.clips)
            shown += evaluation.glob(f"strips/*/*/{name}-vs-*.png")  # a temporal model's
            for image in sorted(shown):
                relative = image.relative_to(evaluation).parent
                mlflow.log_artifact(str(image), artifact_path=f"evaluation/{relative}")
    tracker.log_to_parent(
        summary=metrics,
        texts={"metrics.md": (evaluation / "metrics.md").read_text()},
        folders={params.paths.psnr_per_sigma: "psnr_per_sigma"},
    )


def _evaluate(params: Params) -> EvaluateSummary:
    config = params.evaluate
    evalsets_dir = Path(params.paths.evalsets)
    models = _load_models(params)
    methods: dict[str, BatchDenoiser] = {
        name: per_image(baseline(name, config))
        for name in config.methods
        if name not in VIDEO_METHODS
    }
    # Temporal models (train.window > 1) are scored on the clip sets only.
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
    metrics: dict[str, Any] = {
        "sets": {},
        "conventions": {
            "range": "RGB float in [0, 1], PSNR data range 1.0, per image then averaged",
            "ssim": "Gaussian 11x11 window, sigma 1.5, population covariance, channel mean",
            "noise": "added in float, unclipped; denoised outputs clipped to [0, 1]",
            "models": ("x8 self-ensemble" if params.apply.self_ensemble else "one pass per image")
            + f", {params.apply.precision}, as params.apply serves them",
            "seed": params.seed,
        },
    }
    rows: list[dict[str, Any]] = []
    images: list[tuple[str, np.ndarray]] = []
    set_names = [name for name in list_sets(evalsets_dir) if name != VALIDATION]
    loaded = {name: load_set(evalsets_dir, name) for name in set_names}
    jobs = [(name, level) for name in set_names for level in loaded[name][2]["levels"]]
    for set_name, level in progress(jobs, description="evaluate"):
        clean, noisy_levels, info = loaded[set_name]
        sigma = _told_sigma(info["levels"][level])
        set_metrics = metrics["sets"].setdefault(
            set_name,
            {"images": len(clean), "height": clean.shape[1], "width": clean.shape[2], "levels": {}},
        )
        level_metrics = set_metrics["levels"].setdefault(level, {})
        for method, denoise_batch in methods.items():
            count = len(clean)
            if method == "bm3d":
                if config.bm3d_levels and level not in config.bm3d_levels:
                    continue
                count = min(
                    count, config.bm3d_max_images if config.bm3d_max_images is not None else count
                )
            if count == 0:
                continue
            result = score(
                clean[:count],
                noisy_levels[level][:count],
                sigma,
                denoise_batch,
                keep=config.num_triptychs if method != "noisy" else 0,
            )
            level_metrics[method] = {
                "psnr": float(np.mean(result.psnr)),
                "ssim": float(np.mean(result.ssim)),
                "ms_per_frame": result.ms_per_frame,
                "images": count,
            }
            for position, (value_psnr, value_ssim) in enumerate(
                zip(result.psnr, result.ssim, strict=True)
            ):
                rows.append(
                    {
                        "set": set_name,
                        "level": level,
                        "method": method,
                        "image": info["images"][position],
                        "psnr": value_psnr,
                        "ssim": value_ssim,
                    }
                )
            for position, denoised in enumerate(result.outputs):
                images.append(
                    (
                        f"triptychs/{set_name}/{level}/{method}-{position}.png",
                        triptych(noisy_levels[level][position], denoised, clean[position]),
                    )
                )
    clip_metrics = _evaluate_clips(params, {**methods, **temporal}, evalsets_dir, images)
    if clip_metrics:
        metrics["clip_sets"] = clip_metrics
    model_info = {name: info for name, (_, info) in models.items()}
    metrics["models"] = model_info
    table = markdown_table(metrics, model_info) + clip_table(metrics.get("clip_sets", {}))
    with atomic_directory(params.paths.evaluation) as staging:
        for relative, image in images:
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            write_image(staging / relative, image)
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


def psnr_per_sigma(metrics: dict[str, Any], sigmas: list[float]) -> dict[str, str]:
    """CSV text (sigma, psnr, ssim) per set and method over the Gaussian levels `sigmas`: for
    DVC plots, which draw one line per file, so {set}/{method}.csv is one curve."""
    curves: dict[str, list[str]] = {}
    for set_name, set_metrics in metrics["sets"].items():
        for sigma in sigmas:
            for method, result in set_metrics["levels"][level_name("gaussian", sigma)].items():
                curves.setdefault(f"{set_name}/{method}.csv", ["sigma,psnr,ssim"]).append(
                    f"{sigma:g},{result['psnr']:.4f},{result['ssim']:.4f}"
                )
    return {relative: "\n".join(lines) + "\n" for relative, lines in curves.items()}
