"""Score every denoiser on the same images and the same noise in one run: PSNR, SSIM, ms/frame.

Usage:  .venv/bin/python bench/quality.py [--params params.yaml] [--models-dir DIR ...]
            [--sigmas 15 25 50] [--methods noisy blur ... MODEL ...] [--bm3d-max-images N]
            [--batch-size N] [--self-ensemble MODEL ...] [--bfloat16 MODEL ...]
            [--out reports/quality]

Images: the clean images of the evaluation sets the noise stage wrote (paths.evalsets): "test"
(held-out video frames), "photographs" (scikit-image photographs, 256x256 by default) and
"held_out" (noise.held_out: tiles of photographs no training set uses), where written.
Noise: for each sigma (default: params.noise.evaluation.gaussian), one draw of AWGN per set
(seed params.seed, rng named "quality", set, sigma), scored twice: "unclipped" (the
literature's convention) and "as saved" (the same noisy pixels clipped to [0, 1] and rounded to
8 bits, as a frame written to disk). Every method sees identical inputs.
Methods: the classical baselines (noisy, blur, median, nlm, bm3d; told the nominal sigma, one
image at a time; BM3D on the first --bm3d-max-images images only, if given) and every *.keras
model in the --models-dir folders (default paths.models), in batches of --batch-size after one
warm-up call per set. ms/frame is wall-clock time over the whole set. --self-ensemble also
scores each named model's x8 self-ensemble (denoise.serving.tiling.self_ensemble: the mean
over the 8 flips and quarter turns, 8 model calls), as the method <model>+x8; --bfloat16 each named
model computing in mixed bfloat16 (apply.precision: bfloat16), as <model>+bf16.

Scoring is denoise.evaluation's, as the evaluate stage scores. The findings read the scores at
the headline sigma (params.noise.validation_sigma) against the targets in params.quality.

Writes DIR/quality.json and DIR/quality.md (tables per set and variant, a comparison on the
images BM3D ran on, the models, and findings computed from the numbers) and prints the markdown.
"""

from __future__ import annotations

from denoise.core import runtime

runtime.configure()  # before keras loads: TensorFlow's CPU options, as `denoise` sets them

import argparse
import collections
import dataclasses
import datetime
import importlib.util
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from denoise.core.atomic import write_json, write_text
from denoise.core.config import Params, load_params
from denoise.core.errors import DataError, DenoiseError
from denoise.core.markdown import markdown_table
from denoise.core.noise import add_gaussian_noise, as_saved, set_rng
from denoise.core.schema import BASELINE_METHODS
from denoise.data.evalsets import list_sets, load_set
from denoise.evaluation.adapters import model_denoiser
from denoise.evaluation.baselines import image_baselines
from denoise.evaluation.scoring import BatchDenoiser, MethodResult, score_methods

SETS = ("test", "photographs", "held_out")  # those the noise stage wrote
VARIANTS = ("unclipped", "as saved")
MODEL_FIELDS = ("parameters", "train_seconds", "epochs", "architecture", "profile", "noise")
ENSEMBLE = "+x8"  # suffix of a model's self-ensemble method
BF16 = "+bf16"  # suffix of a model computing in bfloat16 (apply.precision: bfloat16)
CONVENTIONS = {
    "images": "RGB float in [0, 1]; sigma on the 0-255 scale",
    "noise": "AWGN added in float, one draw per set and sigma (seed, 'quality', set, sigma); "
    "'unclipped' as drawn, 'as saved' the same pixels clipped to [0, 1] and rounded to 8 bits",
    "metrics": "PSNR on RGB, data range 1.0, and SSIM (Gaussian 11x11, sigma 1.5, population "
    "covariance, channel mean), per image then averaged; denoised outputs clipped to [0, 1], "
    "the noisy row is the input itself",
    "timing": "wall-clock ms per frame over the whole set, mean over sigmas; classical methods "
    "one image at a time told the nominal sigma, models in batches after a warm-up call",
}


# ---- inputs ------------------------------------------------------------------------------


def find_models(directories: list[Path]) -> dict[str, Path]:
    """Every *.keras file in the folders, by name: its stem, or folder/stem when stems repeat."""
    paths = [path for directory in directories for path in sorted(directory.glob("*.keras"))]
    stems = collections.Counter(path.stem for path in paths)
    named: dict[str, Path] = {}
    for path in paths:
        name = path.stem if stems[path.stem] == 1 else f"{path.parent.name}/{path.stem}"
        if name in named:
            raise ValueError(f"two models are both called {name!r}: {named[name]} and {path}")
        named[name] = path
    return named


def model_summary(path: Path, model: Any) -> dict[str, Any]:
    """The training summary beside a model (<name>.json): MODEL_FIELDS, None where absent."""
    from denoise.models.build import count_parameters

    summary_path = path.with_suffix(".json")
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    fields: dict[str, Any] = {field: summary.get(field) for field in MODEL_FIELDS}
    if fields["parameters"] is None:
        fields["parameters"] = count_parameters(model)
    return {"path": str(path), **fields}


def load_models(paths: dict[str, Path]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Load each model (compile=False: inference only) with its training summary."""
    from denoise.models.build import load_model  # lazy: Keras loads after runtime.configure

    models = {}
    for name, path in paths.items():
        model = load_model(path)
        models[name] = (model, model_summary(path, model))
    return models


def load_clean_sets(evalsets_dir: Path) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Clean images float32 (N, H, W, 3) in [0, 1] and image names of each set in SETS that
    the noise stage wrote."""
    names = [name for name in SETS if name in list_sets(evalsets_dir)]
    if not names:
        raise DataError(f"{evalsets_dir}: none of the sets {', '.join(SETS)}; run `denoise noise`")
    loaded = {name: load_set(evalsets_dir, name) for name in names}
    return {name: (clean, info["images"]) for name, (clean, _, info) in loaded.items()}


def noisy_inputs(
    clean: np.ndarray, sigma: float, seed: int, set_name: str
) -> dict[str, np.ndarray]:
    """The noisy images every method sees, by variant: one draw of AWGN, unclipped and as saved.

    clean: float32 (N, H, W, 3) in [0, 1]; sigma on the 0-255 scale.
    """
    noisy = add_gaussian_noise(clean, sigma, set_rng(seed, "quality", set_name, f"{sigma:g}"))
    return {"unclipped": noisy, "as saved": as_saved(noisy)}


# ---- measuring ---------------------------------------------------------------------------


def build_denoisers(
    methods: list[str], params: Params, models: dict[str, tuple[Any, dict[str, Any]]], batch: int
) -> dict[str, BatchDenoiser]:
    """A batch denoiser per method: classical ones image by image, models in batches."""
    denoisers = image_baselines(methods, params.evaluate)
    denoisers |= {
        name: model_denoiser(
            models[name][0],
            batch,
            ensemble=name.endswith(ENSEMBLE),
            precision="bfloat16" if name.endswith(BF16) else "float32",
        )
        for name in methods
        if name in models
    }
    return denoisers


def warm_up(
    denoisers: dict[str, BatchDenoiser], noisy: np.ndarray, sigma: float, batch: int
) -> None:
    """Call every method once, untimed: models on a full batch (traces the graph for this
    size), classical methods on a 32x32 crop (imports, caches). noisy: float32 (N, H, W, 3)
    at sigma (0-255 scale)."""
    for name, denoise_batch in denoisers.items():
        sample = noisy[:1, :32, :32] if name in BASELINE_METHODS else noisy[:batch]
        denoise_batch(sample, sigma)


def method_scores(result: MethodResult) -> dict[str, Any]:
    """A method's mean PSNR / SSIM, ms per frame and images (as metrics.json holds them) and
    its per-image PSNR and SSIM."""
    return {**result.summary(), "psnr_per_image": result.psnr, "ssim_per_image": result.ssim}


def measure_set(
    set_name: str,
    clean: np.ndarray,
    denoisers: dict[str, BatchDenoiser],
    sigmas: list[float],
    seed: int,
    bm3d_max_images: int | None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """{variant: {sigma: {method: scores}}} for one set."""
    results: dict[str, dict[str, dict[str, Any]]] = {variant: {} for variant in VARIANTS}
    counts = {} if bm3d_max_images is None else {"bm3d": bm3d_max_images}
    for sigma in sigmas:
        inputs = noisy_inputs(clean, sigma, seed, set_name)
        for variant, noisy in inputs.items():
            level = results[variant].setdefault(f"{sigma:g}", {})
            for method, result in score_methods(clean, noisy, sigma, denoisers, counts):
                level[method] = method_scores(result)
                print(
                    f"  {set_name}, {variant}, sigma {sigma:g}, {method}: "
                    f"{level[method]['psnr']:.2f} dB, {level[method]['ms_per_frame']:.1f} ms/frame",
                    file=sys.stderr,
                    flush=True,
                )
    return results


# ---- tables ------------------------------------------------------------------------------


def mean_ms(variant_results: dict[str, dict[str, Any]], method: str) -> float:
    """A method's ms per frame, averaged over the sigmas of one set and variant."""
    return float(np.mean([level[method]["ms_per_frame"] for level in variant_results.values()]))


def mean_psnr(result: dict[str, Any], images: int | None = None) -> float:
    """Mean PSNR over the first `images` images (all by default)."""
    return float(np.mean(result["psnr_per_image"][:images]))


def training_noise(noise: dict[str, Any] | None) -> str:
    """A training noise config as a table cell: "sigma 25", "blind 5-55, as saved", "-"."""
    if not noise:
        return "-"
    kind = noise.get("kind", "?")
    if kind == "gaussian_blind":
        text = f"blind {noise['sigma_min']:g}-{noise['sigma_max']:g}"
    elif kind == "gaussian":
        text = f"sigma {noise['sigma']:g}"
    else:
        text = kind
    return f"{text}, as saved" if noise.get("as_saved") else text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _dash(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def _cell(result: dict[str, Any], total: int) -> str:
    """'PSNR / SSIM' over the first `total` images, marked (n=K) when it ran on fewer."""
    count = min(result["images"], total)
    psnr = mean_psnr(result, count)
    ssim = float(np.mean(result["ssim_per_image"][:count]))
    note = f" (n={count})" if count != total else ""
    return f"{psnr:.2f} / {ssim:.3f}{note}"


def quality_table(
    variant_results: dict[str, dict[str, Any]],
    total: int,
    models: dict[str, dict[str, Any]],
    subset: int | None = None,
) -> str:
    """One row per method: PSNR / SSIM per sigma, ms per frame, model size, training.

    subset: PSNR / SSIM on the first `subset` images only, without the other columns.
    """
    sigmas = list(variant_results)
    extra = ["ms/frame", "parameters", "train s", "training noise"] if subset is None else []
    header = ["method", *[f"sigma {sigma} PSNR / SSIM" for sigma in sigmas], *extra]
    rows = []
    count = subset or total
    for method in variant_results[sigmas[0]]:
        cells = [method, *[_cell(level[method], count) for level in variant_results.values()]]
        if subset is None:
            info = models.get(method, {})
            cells += [
                f"{mean_ms(variant_results, method):.1f}",
                _dash(info.get("parameters"), ","),
                _dash(info.get("train_seconds"), ".0f"),
                training_noise(info.get("noise")),
            ]
        rows.append(cells)
    return markdown_table(header, rows)


def models_table(models: dict[str, dict[str, Any]]) -> str:
    """Architecture, profile, size, training time and noise of every model scored."""
    header = ["model", "architecture", "profile", "parameters", "epochs", "train s"]
    rows = [
        [
            name,
            _dash(info["architecture"]),
            _dash(info["profile"]),
            _dash(info["parameters"], ","),
            _dash(info["epochs"]),
            _dash(info["train_seconds"], ".0f"),
            training_noise(info["noise"]),
        ]
        for name, info in models.items()
    ]
    return markdown_table([*header, "training noise"], rows)


def _bm3d_images(set_info: dict[str, Any]) -> int | None:
    """How many images BM3D ran on when fewer than the set, else None."""
    count = set_info.get("bm3d_images")
    return count if count is not None and count < set_info["images"] else None


def markdown_report(report: dict[str, Any]) -> str:
    """The whole report as markdown: header, tables per set and variant, findings."""
    lines = [
        "# Quality benchmark",
        "",
        f"Machine: {report['machine']}. Date: {report['date']}. Params: `{report['params']}`, "
        f"seed {report['seed']}, model batch {report['batch_size']}.",
        "",
        f"Command: `{report['command']}`",
        "",
        *[f"- {key}: {value}" for key, value in report["conventions"].items()],
        "- targets (noise.validation_sigma, params.quality): "
        + ", ".join(f"{key} {value:g}" for key, value in report["targets"].items()),
        "",
    ]
    for set_name, set_info in report["sets"].items():
        for variant, variant_results in report["results"][set_name].items():
            lines += [
                f"## {set_name} ({set_info['images']} images, "
                f"{set_info['height']}x{set_info['width']}), {variant}",
                "",
                quality_table(variant_results, set_info["images"], report["models"]),
                "",
            ]
    for set_name, set_info in report["sets"].items():
        count = _bm3d_images(set_info)
        if count is None:
            continue
        names = ", ".join(set_info["names"][:count])
        for variant, variant_results in report["results"][set_name].items():
            lines += [
                f"## {set_name}, {variant}: on the {_plural(count, 'image')} BM3D ran on ({names})",
                "",
                quality_table(variant_results, count, report["models"], subset=count),
                "",
            ]
    if report["models"]:
        lines += ["## Models", "", models_table(report["models"]), ""]
    lines += ["## Findings", ""]
    lines += [f"- **{finding['name']}**: {finding['text']}" for finding in report["findings"]]
    return "\n".join(lines) + "\n"


# ---- findings ----------------------------------------------------------------------------
# Each finding reads the unclipped scores at the headline sigma of one set and returns its
# numbers and a sentence, judged against the report's targets (params.quality); `findings`
# skips it, saying why, when the set, the sigma, a model or a reference method it needs is
# missing.

Level = dict[str, dict[str, Any]]  # {method: scores} at one set, variant and sigma


def targets(params: Params) -> dict[str, float]:
    """The headline sigma (noise.validation_sigma) and params.quality's targets, as the report
    records them."""
    return {"headline_sigma": params.noise.validation_sigma, **dataclasses.asdict(params.quality)}


def _scored(
    report: dict[str, Any], set_name: str, references: tuple[str, ...], any_reference: bool
) -> tuple[Level, list[str]] | str:
    """A set's unclipped scores at the headline sigma and its models, best PSNR first; or why a
    finding needing them and the reference methods (all, or any one) cannot be computed."""
    headline = report["targets"]["headline_sigma"]
    if set_name not in report["results"]:
        return f"the {set_name} set was not scored"
    level = report["results"][set_name]["unclipped"].get(f"{headline:g}")
    if level is None:
        return f"sigma {headline:g} was not among --sigmas"
    models = sorted(
        (name for name in report["models"] if name in level), key=lambda name: -level[name]["psnr"]
    )
    missing = [method for method in references if method not in level]
    if missing and (not any_reference or len(missing) == len(references)):
        return f"{(' or ' if any_reference else ' and ').join(missing)} was not run (--methods)"
    return (level, models) if models else "no model was scored"


def _against(level: Level, model: str, reference: str) -> dict[str, Any]:
    """model's PSNR against reference's, on the images the reference ran on."""
    count = level[reference]["images"]
    model_psnr = mean_psnr(level[model], count)
    return {
        "model": model,
        "model_psnr": model_psnr,
        "reference": reference,
        "reference_psnr": level[reference]["psnr"],
        "gap_db": model_psnr - level[reference]["psnr"],
        "images": count,
    }


def _against_text(comparison: dict[str, Any], total: int) -> str:
    count = comparison["images"]
    note = "" if count == total else f", on the {_plural(count, 'image')} it ran on"
    return (
        f"{comparison['model']} {comparison['model_psnr']:.2f} dB against "
        f"{comparison['reference']} {comparison['reference_psnr']:.2f} dB{note}: "
        f"{comparison['gap_db']:+.2f} dB"
    )


def _test_vs_bm3d(report: dict[str, Any], level: Level, models: list[str]) -> dict[str, Any]:
    """The best model against BM3D, and against the goal BM3D + quality.bm3d_goal_db."""
    comparison = _against(level, models[0], "bm3d")
    margin = report["targets"]["bm3d_goal_db"]
    goal = comparison["reference_psnr"] + margin
    met = comparison["model_psnr"] >= goal
    verdict = "met" if met else f"not met, {goal - comparison['model_psnr']:.2f} dB short"
    return {
        **comparison,
        "goal_psnr": goal,
        "goal_met": met,
        "text": f"{_against_text(comparison, report['sets']['test']['images'])}; goal BM3D + "
        f"{margin:g} = {goal:.2f} dB: {verdict}.",
    }


def _photographs_vs_classical(
    report: dict[str, Any], level: Level, models: list[str]
) -> dict[str, Any]:
    """The best model against NLM and against BM3D, each on the images it ran on."""
    comparisons = [
        _against(level, models[0], reference) for reference in ("nlm", "bm3d") if reference in level
    ]
    total = report["sets"]["photographs"]["images"]
    missing = [f"{method} was not run" for method in ("nlm", "bm3d") if method not in level]
    sentences = [*[_against_text(item, total) for item in comparisons], *missing]
    return {"model": models[0], "comparisons": comparisons, "text": "; ".join(sentences) + "."}


def _speed(report: dict[str, Any], level: Level, models: list[str]) -> dict[str, Any]:
    """BM3D's time per photograph (256x256), the fastest model at least as good as BM3D, the
    best model quality.fast_speedup times faster. "As good" is judged where the quality goal
    is, on the test frames at the headline sigma (on BM3D's images), when BM3D ran there; else
    on the photographs."""
    headline = report["targets"]["headline_sigma"]
    fast_speedup = report["targets"]["fast_speedup"]
    stretch_speedup = report["targets"]["stretch_speedup"]
    unclipped = report["results"]["photographs"]["unclipped"]
    bm3d_ms = mean_ms(unclipped, "bm3d")
    times = {model: mean_ms(unclipped, model) for model in models}
    test = report["results"].get("test", {}).get("unclipped", {}).get(f"{headline:g}", {})
    judged_on, judge = ("test", test) if "bm3d" in test else ("photographs", level)
    as_good = [
        model
        for model in models
        if model in judge and _against(judge, model, "bm3d")["gap_db"] >= 0
    ]
    fastest = min(as_good, key=times.__getitem__) if as_good else None
    fast = [model for model in models if times[model] <= bm3d_ms / fast_speedup]
    best_fast = fast[0] if fast else None  # models come best PSNR first
    within_stretch = best_fast is not None and times[best_fast] <= bm3d_ms / stretch_speedup
    fastest_text = f"{fastest} ({times[fastest]:.1f} ms)" if fastest else "none"
    best_fast_text = (
        f"{best_fast} ({level[best_fast]['psnr']:.2f} dB, {times[best_fast]:.1f} ms, "
        f"{'within' if within_stretch else 'not within'} BM3D/{stretch_speedup:g} = "
        f"{bm3d_ms / stretch_speedup:.1f} ms)"
        if best_fast
        else "none"
    )
    return {
        "bm3d_ms_per_frame": bm3d_ms,
        "fastest_model_at_least_bm3d": fastest,
        "judged_on": judged_on,
        "best_model_within_fast_speedup": best_fast,
        "within_stretch_speedup": within_stretch,
        "text": f"BM3D {bm3d_ms:.1f} ms/frame; fastest model with PSNR >= BM3D's ({judged_on}, "
        f"sigma {headline:g}): {fastest_text}; best model at <= BM3D/{fast_speedup:g} = "
        f"{bm3d_ms / fast_speedup:.1f} ms: {best_fast_text}.",
    }


def _training_kind(summary: dict[str, Any], headline: float) -> str | None:
    """ "blind" (gaussian_blind), "fixed" (gaussian at the headline sigma) or None, from the
    summary."""
    noise = summary.get("noise") or {}
    if noise.get("kind") == "gaussian_blind":
        return "blind"
    if noise.get("kind") == "gaussian" and float(noise.get("sigma", -1)) == headline:
        return "fixed"
    return None


def blind_pairs(models: dict[str, dict[str, Any]], headline: float) -> list[tuple[str, str]]:
    """(blind, fixed) model pairs of the same architecture, by their training noise: blind, and
    Gaussian at the headline sigma."""
    return [
        (blind, fixed)
        for blind in models
        for fixed in models
        if _training_kind(models[blind], headline) == "blind"
        and _training_kind(models[fixed], headline) == "fixed"
        and models[blind].get("architecture") is not None
        and models[blind]["architecture"] == models[fixed].get("architecture")
        and blind.endswith(ENSEMBLE) == fixed.endswith(ENSEMBLE)
        and blind.endswith(BF16) == fixed.endswith(BF16)
    ]


def _blind_vs_fixed(report: dict[str, Any], level: Level, models: list[str]) -> dict[str, Any]:
    """PSNR gap of each blind model to its twin of the same architecture trained at the headline
    sigma, against the target quality.blind_gap_db."""
    headline, allowed = report["targets"]["headline_sigma"], report["targets"]["blind_gap_db"]
    pairs = [
        (b, f) for b, f in blind_pairs(report["models"], headline) if b in level and f in level
    ]
    if not pairs:
        reason = (
            f"no two models of one architecture, one trained blind and one at sigma {headline:g}"
        )
        return _skipped(reason)
    gaps = []
    for blind, fixed in pairs:
        gap = level[blind]["psnr"] - level[fixed]["psnr"]
        gaps.append(
            {
                "blind": blind,
                "non_blind": fixed,
                "gap_db": gap,
                "within_target": gap >= -allowed,
            }
        )
    text = "; ".join(
        f"{gap['blind']} - {gap['non_blind']}: {gap['gap_db']:+.2f} dB "
        f"({'within' if gap['within_target'] else 'outside'} the {allowed:g} dB target)"
        for gap in gaps
    )
    return {"pairs": gaps, "text": text + "."}


def _skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason, "text": f"skipped: {reason}."}


Finding = Callable[[dict[str, Any], Level, list[str]], dict[str, Any]]
# name ({sigma}: the headline sigma), set, reference methods, whether any one reference is
# enough, the computation
FINDINGS: tuple[tuple[str, str, tuple[str, ...], bool, Finding], ...] = (
    ("test, sigma {sigma}: best model against BM3D", "test", ("bm3d",), False, _test_vs_bm3d),
    (
        "photographs, sigma {sigma}: best model against NLM and BM3D",
        "photographs",
        ("nlm", "bm3d"),
        True,
        _photographs_vs_classical,
    ),
    (
        "speed on the photographs (mean ms/frame; best by sigma {sigma} PSNR)",
        "photographs",
        ("bm3d",),
        False,
        _speed,
    ),
    ("blind against non-blind (test, sigma {sigma})", "test", (), False, _blind_vs_fixed),
)


def findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every finding, computed from the report's numbers or skipped with the reason."""
    results = []
    for name, set_name, references, any_reference, compute in FINDINGS:
        scored = _scored(report, set_name, references, any_reference)
        result = _skipped(scored) if isinstance(scored, str) else compute(report, *scored)
        sigma = f"{report['targets']['headline_sigma']:g}"
        results.append({"name": name.format(sigma=sigma), "status": "ok", **result})
    return results


# ---- command line ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--models-dir", type=Path, nargs="+", default=None, help="default: paths.models"
    )
    parser.add_argument(
        "--sigmas", type=float, nargs="+", default=None, help="default: noise.evaluation.gaussian"
    )
    parser.add_argument("--methods", nargs="+", default=None, help="default: all, models too")
    parser.add_argument("--bm3d-max-images", type=int, default=None, help="default: all images")
    parser.add_argument("--batch-size", type=int, default=None, help="default: train batch size")
    for option, served_as in (
        ("--self-ensemble", f"' x8 self-ensemble, as MODEL{ENSEMBLE}"),
        ("--bfloat16", f" computing in bfloat16, as MODEL{BF16}"),
    ):
        parser.add_argument(
            option,
            nargs="+",
            default=[],
            metavar="MODEL",
            help=f"also score these models{served_as}",
        )
    parser.add_argument("--out", type=Path, default=Path("reports/quality"))
    args = parser.parse_args(argv)
    if any(sigma <= 0 for sigma in args.sigmas or []):
        parser.error("--sigmas must be > 0")
    for option in ("bm3d_max_images", "batch_size"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1")
    return args


def select_methods(requested: list[str] | None, models: dict[str, Path]) -> list[str]:
    """The methods to run, in table order (classical, then models); raises on unknown names."""
    known = [*BASELINE_METHODS, *models]
    unknown = [name for name in requested or [] if name not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)} (known: {', '.join(known)})")
    methods = [name for name in known if requested is None or name in requested]
    if "bm3d" in methods and importlib.util.find_spec("bm3d") is None:
        raise ValueError("bm3d is not installed: `pip install bm3d`, or leave it out of --methods")
    return methods


def add_variants(
    methods: list[str],
    models: dict[str, tuple[Any, dict[str, Any]]],
    named: list[str],
    suffix: str,
    option: str,
) -> list[str]:
    """methods with MODEL+suffix (+x8, or +bf16) after each model in named; models gains the
    same entries (the model and its summary). Raises on a name that is not a model being
    scored (option names the command-line option that gave it)."""
    unknown = [name for name in named if name not in models]
    if unknown:
        raise ValueError(
            f"{option}: {', '.join(unknown)} not among the models scored "
            f"({', '.join(models) or 'none'})"
        )
    ordered = []
    for name in methods:
        ordered.append(name)
        if name in named:
            models[name + suffix] = models[name]
            ordered.append(name + suffix)
    return ordered


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Measure every method on every set and build the report (without writing it)."""
    from report import machine  # bench/report.py, beside this script

    params = load_params(args.params)
    model_dirs = args.models_dir or [Path(params.paths.models)]
    model_paths = find_models(model_dirs)
    methods = select_methods(args.methods, model_paths)
    models = load_models({name: path for name, path in model_paths.items() if name in methods})
    methods = add_variants(methods, models, args.bfloat16, BF16, "--bfloat16")
    methods = add_variants(methods, models, args.self_ensemble, ENSEMBLE, "--self-ensemble")
    batch = args.batch_size or params.train.batch_size
    sigmas = args.sigmas or [float(sigma) for sigma in params.noise.evaluation.gaussian]
    if not sigmas:
        raise ValueError("no sigmas: give --sigmas, or Gaussian levels in noise.evaluation")
    denoisers = build_denoisers(methods, params, models, batch)
    sets: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for set_name, (clean, names) in load_clean_sets(Path(params.paths.evalsets)).items():
        sets[set_name] = {
            "images": len(clean),
            "height": clean.shape[1],
            "width": clean.shape[2],
            "names": names,
            "bm3d_images": min(len(clean), args.bm3d_max_images or len(clean))
            if "bm3d" in methods
            else None,
        }
        first = noisy_inputs(clean, sigmas[0], params.seed, set_name)["unclipped"]
        warm_up(denoisers, first, sigmas[0], batch)
        results[set_name] = measure_set(
            set_name, clean, denoisers, sigmas, params.seed, args.bm3d_max_images
        )
    report: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "params": str(args.params),
        "seed": params.seed,
        "models_dirs": [str(directory) for directory in model_dirs],
        "batch_size": batch,
        "methods": methods,
        "bm3d_max_images": args.bm3d_max_images,
        "conventions": CONVENTIONS,
        "targets": targets(params),
        "sets": sets,
        "results": results,
        "models": {name: summary for name, (_, summary) in models.items()},
    }
    report["findings"] = findings(report)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write quality.json and quality.md under --out, print the markdown."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        report = run(args, shlex.join(["bench/quality.py", *argv]))
    except (ValueError, DenoiseError) as error:
        raise SystemExit(f"error: {error}") from None
    markdown = markdown_report(report)
    write_json(args.out / "quality.json", report)
    write_text(args.out / "quality.md", markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
