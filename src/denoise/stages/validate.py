"""validate stage: the frames and evaluation-set suites; a failure stops the pipeline here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from denoise.core.atomic import atomic_directory
from denoise.core.config import Params
from denoise.core.errors import ValidationError
from denoise.data.extract import load_manifest
from denoise.tracking.runs import stage
from denoise.tracking.validation import log_report
from denoise.validation.outcomes import EVALUATION_SETS, FRAMES, SUMMARY_HTML, SuiteResult, failures
from denoise.validation.report import failure_message
from denoise.validation.runner import validate_tables
from denoise.validation.suites import evaluation_set_expectations, frames_expectations
from denoise.validation.tables import evaluation_set_table, frame_table, split_warnings


@dataclasses.dataclass(frozen=True)
class ValidationSummary:
    suites: list[SuiteResult]
    report: Path  # the summary page, index.html
    warnings: list[str] = dataclasses.field(default_factory=list)  # one line each


def run(params: Params) -> ValidationSummary:
    """Validate the frames and evaluation sets; write the report under paths.validation.

    The report is written, and logged to an MLflow child run of the pipeline's run, before a
    failure is raised, so the user can read why it failed.
    """
    frames_dir = Path(params.paths.frames)
    manifest = load_manifest(frames_dir)
    frames = frame_table(manifest, frames_dir, params.validate.frames.near_duplicate_difference)
    evaluation_sets = evaluation_set_table(Path(params.paths.evalsets))
    tables = {
        FRAMES: (frames, frames_expectations(params)),
        EVALUATION_SETS: (
            evaluation_sets,
            evaluation_set_expectations(params.validate.evaluation_sets),
        ),
    }
    report_dir = Path(params.paths.validation)
    report = report_dir / SUMMARY_HTML
    with stage(params, "validate") as tracker:
        with atomic_directory(report_dir) as staging:
            results = validate_tables(tables, staging)
        with tracker.child("validate", tags={"denoise.kind": "validation"}):
            log_report(results, report_dir)
        if failures(results):
            raise ValidationError(failure_message(results, report))
    return ValidationSummary(suites=results, report=report, warnings=split_warnings(manifest))
