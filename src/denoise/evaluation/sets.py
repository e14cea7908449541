"""Every method on every evaluation set and noise level: the metrics, the per-image rows and
the comparison images (triptychs, clip strips) that the evaluate stage writes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from denoise.core.config import Params
from denoise.core.images import clip_strip, triptych
from denoise.core.metrics import psnr
from denoise.core.noise import level_name
from denoise.core.progress import progress
from denoise.evaluation.baselines import VIDEO_METHODS
from denoise.evaluation.scoring import BatchDenoiser, score_clips, score_methods, told_sigma

# An evaluation set as data.evalsets.load_set returns it: clean float32 (N, H, W, 3) images
# (or (N, T, H, W, 3) clips), the noisy copies by level name, and the set's index entry.
EvaluationSet = tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]
Image = tuple[str, np.ndarray]  # a path relative to paths.evaluation, and a uint8 image


@dataclasses.dataclass(frozen=True)
class ScoredSets:
    sets: dict[str, Any]  # metrics.json's "sets" (or "clip_sets"): sizes and scores per level
    rows: list[dict[str, Any]]  # one per image, method and level (image sets only)
    images: list[Image]


def score_image_sets(
    params: Params, sets: dict[str, EvaluationSet], methods: dict[str, BatchDenoiser]
) -> ScoredSets:
    """Every method on every image set and level; BM3D only at evaluate.bm3d_levels, on its
    first evaluate.bm3d_max_images images. Keeps evaluate.num_triptychs noisy | denoised |
    clean images per set, level and method (none of the noisy input)."""
    config = params.evaluate
    scored: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    images: list[Image] = []
    jobs = [
        (name, level, method)
        for name, (_, _, info) in sets.items()
        for level in info["levels"]
        for method in methods
    ]
    for set_name, level, method in progress(jobs, description="evaluate"):
        clean, noisy_levels, info = sets[set_name]
        set_metrics = scored.setdefault(
            set_name,
            {"images": len(clean), "height": clean.shape[1], "width": clean.shape[2], "levels": {}},
        )
        level_metrics = set_metrics["levels"].setdefault(level, {})
        counts = {}
        if config.bm3d_levels and level not in config.bm3d_levels:
            counts["bm3d"] = 0
        elif config.bm3d_max_images is not None:
            counts["bm3d"] = config.bm3d_max_images
        noisy = noisy_levels[level]
        results = score_methods(
            clean,
            noisy,
            told_sigma(info["levels"][level]),
            {method: methods[method]},
            counts,
            config.num_triptychs,
        )
        for method, result in results:
            level_metrics[method] = result.summary()
            rows += [
                {
                    "set": set_name,
                    "level": level,
                    "method": method,
                    "image": info["images"][position],
                    "psnr": value_psnr,
                    "ssim": value_ssim,
                }
                for position, (value_psnr, value_ssim) in enumerate(
                    zip(result.psnr, result.ssim, strict=True)
                )
            ]
            images += [
                (
                    f"triptychs/{set_name}/{level}/{method}-{position}.png",
                    triptych(
                        noisy[position],
                        denoised,
                        clean[position],
                        (
                            f"noisy {psnr(clean[position], np.clip(noisy[position], 0, 1)):.2f} dB",
                            f"{method} {result.psnr[position]:.2f} dB",
                            "clean",
                        ),
                    ),
                )
                for position, denoised in enumerate(result.outputs)
            ]
    return ScoredSets(sets=scored, rows=rows, images=images)


def score_clip_sets(
    params: Params, clip_sets: dict[str, EvaluationSet], methods: dict[str, BatchDenoiser]
) -> ScoredSets:
    """Every method on the clip sets (extract.clips): the frame methods frame by frame, the
    video methods that evaluate.methods names (BM4D) on whole clips; BM3D and BM4D at
    evaluate.bm3d_levels only. Keeps each method's first clip at noise.validation_sigma as a
    strip (clip_strip), and for each temporal model a strip noisy | best single-frame model |
    it | clean.

    methods: the frame methods and the temporal models (adapters.window_denoiser), by name.
    """
    heavy, limited = {"bm3d", *VIDEO_METHODS}, params.evaluate.bm3d_levels  # []: every level
    video = {name: VIDEO_METHODS[name] for name in params.evaluate.methods if name in VIDEO_METHODS}
    shown = level_name("gaussian", params.noise.validation_sigma)
    scored: dict[str, Any] = {}
    images: list[Image] = []
    for set_name, (clean, noisy_levels, info) in clip_sets.items():
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
                clean, noisy_levels[level], told_sigma(info["levels"][level]), denoise
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
    return ScoredSets(sets=scored, rows=[], images=images)


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
