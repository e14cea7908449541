"""The results check before promotion: the results suite on evaluate's metrics, then which
models beat the noisy input by validate.results.min_gain_over_noisy_db and so may be promoted
(the register stage asks it)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from denoise.core.atomic import atomic_directory
from denoise.core.config import Params
from denoise.core.errors import ValidationError
from denoise.core.noise import level_name
from denoise.data.evalsets import CLIP_SETS, CLIP_TEST
from denoise.validation.outcomes import RESULTS, SUMMARY_HTML, SuiteResult, failures
from denoise.validation.report import failure_message
from denoise.validation.runner import validate_tables
from denoise.validation.suites import results_expectations
from denoise.validation.tables import results_table


@dataclasses.dataclass(frozen=True)
class ResultsCheck:
    """The results suite passed; which models may be promoted."""

    reference: str  # where gains are measured: "<set>/gaussian-<validation_sigma>"
    noisy_psnr: float  # dB, the noisy input's PSNR there
    psnr: dict[str, float]  # dB per trained model
    gain_db: dict[str, float]  # psnr - noisy_psnr per trained model
    eligible: dict[str, bool]  # gain_db >= validate.results.min_gain_over_noisy_db
    report: Path | None  # index.html of the report, when one was written
    suites: list[SuiteResult]  # for log_report(), with the report folder


def promotion_gains(
    metrics: Mapping[str, Any],
    models: list[str],
    score_set: str,
    sigma: float,
    group: str = "sets",
) -> tuple[str, float, dict[str, float]]:
    """PSNR of each model and of the noisy input on score_set (of metrics[group]: "sets", or
    "clip_sets") at Gaussian sigma (0-255 scale).

    Returns (reference, noisy PSNR, {model: PSNR}). Where the noisy method was not evaluated,
    its PSNR is the expectation for unclipped noise, 20 log10(255 / sigma).
    """
    reference = f"{score_set}/{level_name('gaussian', sigma)}"
    level = metrics.get(group, {}).get(score_set, {}).get("levels", {})
    results = level.get(level_name("gaussian", sigma))
    if results is None:
        raise ValidationError(
            f"results: no scores at {reference} in the metrics (evaluate scores "
            f"{', '.join(metrics.get(group, {})) or 'no sets'}); rerun `denoise evaluate`"
        )
    missing = [model for model in models if model not in results]
    if missing:
        raise ValidationError(
            f"results: no score for {', '.join(missing)} at {reference}; rerun `denoise evaluate`"
        )
    noisy = (
        float(results["noisy"]["psnr"])
        if "noisy" in results
        else 20.0 * math.log10(255.0 / sigma)
        if sigma > 0
        else math.inf
    )
    return reference, noisy, {model: float(results[model]["psnr"]) for model in models}


def check_results(
    metrics: Mapping[str, Any],
    params: Params,
    score_set: str = "test",
    report_dir: str | Path | None = None,
    models: list[str] | None = None,
) -> ResultsCheck:
    """Run the results suite on evaluate's metrics, then decide which models may be promoted.

    metrics: the mapping in paths.metrics. Raises ValidationError (after writing the report,
    when report_dir is given) if a metric is not finite or a PSNR is implausible. A model is
    eligible when it beats the noisy input by validate.results.min_gain_over_noisy_db on
    score_set at noise.validation_sigma; an ineligible model may be recorded, never promoted.
    models: those to decide for (None: train.models), all image models or all temporal ones,
    which are measured on the test clips instead of score_set.
    """
    config = params.validate.results
    tables = {RESULTS: (results_table(metrics), results_expectations(config))}
    report = None
    if report_dir is None:
        results = validate_tables(tables, None)
    else:
        with atomic_directory(report_dir) as staging:
            results = validate_tables(tables, staging)
        report = Path(report_dir) / SUMMARY_HTML
    if failures(results):
        raise ValidationError(failure_message(results, report))
    models = list(params.train.models) if models is None else models
    temporal = any(params.train.window(model) > 1 for model in models)
    where = (CLIP_TEST, CLIP_SETS) if temporal else (score_set, "sets")
    reference, noisy, psnr = promotion_gains(
        metrics, models, where[0], params.noise.validation_sigma, where[1]
    )
    gain = {model: value - noisy for model, value in psnr.items()}
    return ResultsCheck(
        reference=reference,
        noisy_psnr=noisy,
        psnr=psnr,
        gain_db=gain,
        eligible={model: value >= config.min_gain_over_noisy_db for model, value in gain.items()},
        report=report,
        suites=results,
    )
