"""Markdown tables of the evaluate stage's metrics (metrics.json): pure formatting."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _fmt(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def markdown_table(metrics: dict[str, Any], model_info: dict[str, dict[str, Any]]) -> str:
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
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        methods = list(
            dict.fromkeys(method for level in levels for method in set_metrics["levels"][level])
        )
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
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
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
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        methods = dict.fromkeys(
            method for level in levels for method in set_metrics["levels"][level]
        )
        for method in methods:
            cells, times = [method], []
            for level in levels:
                result = set_metrics["levels"][level].get(method)
                if result is None:  # not run at this level (BM3D, BM4D: evaluate.bm3d_levels)
                    cells.append("-")
                    continue
                cells.append(f"{_fmt(result['psnr'], 2)} / {_fmt(result['tpsnr'], 2)}")
                times.append(result["ms_per_frame"])
            lines.append("| " + " | ".join([*cells, f"{np.mean(times):.1f}"]) + " |")
        lines.append("")
    return "\n".join(lines)
