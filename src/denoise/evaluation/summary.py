"""The evaluate stage's metrics (metrics.json) as markdown tables, flat MLflow metrics and
PSNR-per-sigma curves: pure formatting."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from denoise.core.config import Params
from denoise.core.markdown import markdown_table
from denoise.core.noise import level_name
from denoise.data.evalsets import PHOTOGRAPHS
from denoise.evaluation.scoring import IDENTITY


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


def headline_table(
    metrics: dict[str, Any], level: str, order: list[str]
) -> tuple[list[str], list[list[str]], set[tuple[int, int]]]:
    """Each method's PSNR / SSIM on every image set at one noise level, and its ms per frame on
    the first set: (header, rows in the order of `order`, then any other method, the
    (row, column) cells whose PSNR, or time, is best in their column, the noisy input aside)."""
    sets = {name: scores["levels"][level] for name, scores in metrics["sets"].items()}
    scored = {method for scores in sets.values() for method in scores}
    methods = [method for method in order if method in scored]
    methods += sorted(scored - set(methods))
    first = next(iter(sets))
    header = ["method", *[f"{name} PSNR / SSIM" for name in sets], "ms/frame"]
    rows = []
    for method in methods:
        cells = [method]
        for name in sets:
            found = sets[name].get(method)
            cells.append("-" if found is None else f"{found['psnr']:.2f} / {found['ssim']:.3f}")
        timed = sets[first].get(method)
        cells.append("-" if timed is None else f"{timed['ms_per_frame']:.1f}")
        rows.append(cells)
    # (set, key, higher is better) of each column after the method's
    columns = [(name, "psnr", True) for name in sets] + [(first, "ms_per_frame", False)]
    best: set[tuple[int, int]] = set()
    for column, (name, key, higher) in enumerate(columns, start=1):
        ranked = [
            (sets[name][method][key] * (1 if higher else -1), row)
            for row, method in enumerate(methods)
            if method != IDENTITY and method in sets[name]
        ]
        if ranked:
            top = max(ranked)[0]
            best |= {(row, column) for value, row in ranked if value == top}
    return header, rows, best


def champion_line(
    decisions: list[dict[str, Any]], metrics: dict[str, Any], score_set: str, level: str
) -> str:
    """Who is champion after a register run (registry.json's decisions of one registered
    model), with its score beside NLM's and BM3D's on the same frames."""
    moved = [decision for decision in decisions if decision.get("holds") == "champion"]
    if moved:
        decision = moved[0]
        who = f"{decision['registered_model']} v{decision['version']} ({decision['model']})"
        score = decision["score"]
    elif decisions and decisions[0].get("champion_version"):
        decision = decisions[0]
        who = f"{decision['registered_model']} v{decision['champion_version']} (unchanged)"
        score = decision["champion_score"]
    else:
        return "champion: none (no model passed the promotion gate)"
    line = f"champion: {who}, {score:.2f} dB PSNR on {score_set} at {level}"
    scores = metrics["sets"].get(score_set, {}).get("levels", {}).get(level, {})
    classical = [
        f"{name.upper()} {scores[method]['psnr']:.2f}"
        for method, name in (("nlm", "nlm"), ("bm3d", "bm3d"))
        if method in scores
    ]
    return line + (f" (against {', '.join(classical)})" if classical else "")


def headline_sets(params: Params) -> dict[str, str]:
    """The sets headline numbers are given on, by key prefix: the score set, then the
    photographs."""
    return {"test": params.register.score_set, "photos": PHOTOGRAPHS}


def headline_level(params: Params) -> str:
    """The noise level headline numbers are given at: noise.validation_sigma's."""
    return level_name("gaussian", params.noise.validation_sigma)


def short_metrics(
    metrics: dict[str, Any], method: str, sets: dict[str, str], level: str
) -> dict[str, float]:
    """A method's few headline numbers, short-named for the MLflow runs table and DVC:
    {"test_psnr", "test_ssim", "photos_psnr", "photos_ssim", "ms_frame"} for sets
    ({key prefix: set name}, the first one's time) at one level; absent where not scored."""
    found: dict[str, float] = {}
    for position, (prefix, set_name) in enumerate(sets.items()):
        scores = metrics["sets"].get(set_name, {}).get("levels", {}).get(level, {}).get(method)
        if scores is None:
            continue
        found[f"{prefix}_psnr"] = round(scores["psnr"], 3)
        found[f"{prefix}_ssim"] = round(scores["ssim"], 4)
        if position == 0:
            found["ms_frame"] = round(scores["ms_per_frame"], 1)
    return found


def headline_metrics(
    decisions: list[dict[str, Any]],
    metrics: dict[str, Any],
    sets: dict[str, str],
    level: str,
    classical: list[str],
) -> dict[str, float]:
    """The few numbers `dvc metrics show` prints (reports/summary.json), short-named to fit 120
    columns: the champion's version and short_metrics, and the best classical method's PSNR on
    the first set (classical). A champion that an earlier run trained has only its registered
    score. decisions: one registered model's (registry.json)."""
    moved = [decision for decision in decisions if decision.get("holds") == "champion"]
    kept = [decision for decision in decisions if decision.get("champion_version")]
    first_prefix, first_set = next(iter(sets.items()))
    headline: dict[str, float] = {}
    if moved:
        headline["champion"] = int(moved[0]["version"])
        headline.update(short_metrics(metrics, moved[0]["model"], sets, level))
    elif kept:
        headline["champion"] = int(kept[0]["champion_version"])
        headline[f"{first_prefix}_psnr"] = round(kept[0]["champion_score"], 3)
    first = metrics["sets"].get(first_set, {}).get("levels", {}).get(level, {})
    rivals = [first[method]["psnr"] for method in classical if method in first]
    if rivals:
        headline["classical"] = round(max(rivals), 3)
    return headline
