"""The evaluate stage's metrics (metrics.json) as markdown tables, flat MLflow metrics and
PSNR-per-sigma curves: pure formatting."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from denoise.core.config import Params
from denoise.core.markdown import markdown_table
from denoise.core.noise import level_name


def conventions(params: Params) -> dict[str, Any]:
    """How the scores were measured, as metrics.json records it."""
    return {
        "range": "RGB float in [0, 1], PSNR data range 1.0, per image then averaged",
        "ssim": "Gaussian 11x11 window, sigma 1.5, population covariance, channel mean",
        "noise": "added in float, unclipped; denoised outputs clipped to [0, 1]",
        "sigma": "methods that take one are told the true sigma at Gaussian levels, and use "
        "Donoho's MAD estimate on each noisy image at camera and compressed levels",
        "models": ("x8 self-ensemble" if params.apply.self_ensemble else "one pass per image")
        + f", {params.apply.precision}, as params.apply serves them",
        "seed": params.seed,
    }


def _fmt(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def metrics_table(metrics: dict[str, Any], model_info: dict[str, dict[str, Any]]) -> str:
    """One table per evaluation set: PSNR/SSIM per noise level, ms per frame, model sizes."""
    lines = []
    for set_name, set_metrics in metrics["sets"].items():
        levels = list(set_metrics["levels"])
        lines.append(
            f"**{set_name}** ({set_metrics['images']} images, "
            f"{set_metrics['height']}x{set_metrics['width']})\n"
        )
        header = [
            "method",
            *[f"{level} PSNR / SSIM" for level in levels],
            "ms/frame",
            "parameters",
            "train s",
        ]
        methods = dict.fromkeys(
            method for level in levels for method in set_metrics["levels"][level]
        )
        rows = []
        for method in methods:
            cells = [method]
            times = []
            for level in levels:
                result = set_metrics["levels"][level].get(method)
                if result is None:  # not run at this level (BM3D: evaluate.bm3d_levels)
                    cells.append("-")
                    continue
                subset = (
                    f" (n={result['images']})" if result["images"] != set_metrics["images"] else ""
                )
                cells.append(f"{_fmt(result['psnr'], 2)} / {_fmt(result['ssim'], 3)}{subset}")
                times.append(result["ms_per_frame"])
            info = model_info.get(method, {})
            cells += [
                f"{np.mean(times):.1f}",
                f"{info.get('parameters', '-'):,}" if info else "-",
                f"{info['train_seconds']:.0f}" if info else "-",
            ]
            rows.append(cells)
        lines += [markdown_table(header, rows), ""]
    return "\n".join(lines)


def clip_table(clip_sets: dict[str, Any]) -> str:
    """One table per clip set: PSNR / tPSNR per noise level and ms per frame ("" for none).
    tPSNR scores flicker: the change of the residual from frame to frame (core.metrics)."""
    lines = []
    for set_name, set_metrics in clip_sets.items():
        levels = list(set_metrics["levels"])
        lines.append(
            f"**{set_name}** ({set_metrics['clips']} clips of {set_metrics['frames']} frames, "
            f"{set_metrics['height']}x{set_metrics['width']})\n"
        )
        header = ["method", *[f"{level} PSNR / tPSNR" for level in levels], "ms/frame"]
        methods = dict.fromkeys(
            method for level in levels for method in set_metrics["levels"][level]
        )
        rows = []
        for method in methods:
            cells, times = [method], []
            for level in levels:
                result = set_metrics["levels"][level].get(method)
                if result is None:  # not run at this level (BM3D, BM4D: evaluate.bm3d_levels)
                    cells.append("-")
                    continue
                cells.append(f"{_fmt(result['psnr'], 2)} / {_fmt(result['tpsnr'], 2)}")
                times.append(result["ms_per_frame"])
            rows.append([*cells, f"{np.mean(times):.1f}"])
        lines += [markdown_table(header, rows), ""]
    return "\n".join(lines)


def method_metrics(metrics: dict[str, Any], method: str) -> dict[str, float]:
    """A method's scores as flat MLflow metrics: {"test.gaussian-25.psnr": 29.4, ...}."""
    flat = {}
    for set_name, set_metrics in {**metrics["sets"], **metrics.get("clip_sets", {})}.items():
        for level, level_metrics in set_metrics["levels"].items():
            for key in ("psnr", "ssim", "tpsnr", "ms_per_frame"):
                if key in level_metrics.get(method, {}):
                    flat[f"{set_name}.{level}.{key}"] = level_metrics[method][key]
    return flat


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
