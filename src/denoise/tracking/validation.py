"""Logging a validation report to MLflow."""

from __future__ import annotations

from pathlib import Path

from denoise.validation.outcomes import (
    DATA_DOCS,
    GX_PROJECT,
    RESULTS_JSON,
    SUMMARY_HTML,
    SuiteResult,
    failures,
)


def log_report(results: list[SuiteResult], report_dir: Path) -> None:
    """Log verdicts and the report to the active MLflow run: index.html, results.json and the
    Data Docs pages (not Great Expectations' fonts and images, which every report repeats)."""
    import mlflow

    mlflow.log_metrics(
        {f"{result.name}.passed": float(result.success) for result in results}
        | {"failed_expectations": float(len(failures(results)))}
    )
    mlflow.log_artifact(str(report_dir / SUMMARY_HTML), artifact_path="validation")
    mlflow.log_artifact(str(report_dir / RESULTS_JSON), artifact_path="validation")
    docs = report_dir / GX_PROJECT / DATA_DOCS
    for folder in ("expectations", "validations"):
        if (docs / folder).is_dir():
            mlflow.log_artifacts(
                str(docs / folder), artifact_path=f"validation/{GX_PROJECT}/{DATA_DOCS}/{folder}"
            )
