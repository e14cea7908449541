"""Running expectation suites over tables with Great Expectations (a file-backed project)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from denoise.core.atomic import write_json, write_text
from denoise.validation.outcomes import (
    DATA_DOCS,
    MAX_EXAMPLES,
    RESULTS_JSON,
    ROW,
    SUMMARY_HTML,
    Outcome,
    SuiteResult,
)

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations import Expectation

from denoise.validation.report import _results_json, _validation_page, summary_html


def validate_tables(
    tables: Mapping[str, tuple[pd.DataFrame, list[Expectation]]], directory: Path | None
) -> list[SuiteResult]:
    """Validate each table against its suite with Great Expectations 1.x.

    With a directory, a file-backed project is created there (stores, validation results and
    the Data Docs site under gx/), plus index.html and results.json; without one, an
    ephemeral context keeps everything in memory.
    """
    import great_expectations as gx

    context = _context(directory)
    source = context.data_sources.add_pandas("tables")
    results = []
    for name, (table, expectations) in tables.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(data=batch, suite=suite, name=name)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=[],
                # COMPLETE: the Data Docs list every offending row by name.
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [ROW],
                    "return_unexpected_index_query": False,
                },
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": table})
        (validation,) = run.run_results.values()
        outcomes = [_outcome(name, result) for result in validation.results]
        results.append(
            SuiteResult(
                name=name,
                success=bool(validation.success),
                rows=len(table),
                outcomes=outcomes,
                data_docs=None,
            )
        )
    if directory is None:
        return results
    context.build_data_docs()
    results = [
        dataclasses.replace(result, data_docs=_validation_page(directory, result.name))
        for result in results
    ]
    write_json(directory / RESULTS_JSON, _results_json(results))
    write_text(directory / SUMMARY_HTML, summary_html(results))
    return results


def _context(directory: Path | None) -> AbstractDataContext:
    """A Great Expectations context: file-backed in directory (Data Docs beside the stores,
    no how-to buttons), or ephemeral; progress bars and analytics off either way."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if directory is None:
        context: AbstractDataContext = gx.get_context(mode="ephemeral")
    else:
        context = gx.get_context(mode="file", project_root_dir=directory)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.variables.analytics_enabled = False
    if directory is not None:
        context.variables.save()
        context.update_data_docs_site(
            "local_site",
            {
                "class_name": "SiteBuilder",
                # SiteBuilder takes it; GX's TypedDict lists only some keys.
                "show_how_to_buttons": False,  # type: ignore[typeddict-unknown-key]
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": f"{DATA_DOCS}/",
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def _outcome(suite: str, result: Any) -> Outcome:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    column = kwargs.get("column")
    details = result.result or {}
    error = _exception_message(result.exception_info)
    examples: list[str] = []
    if error:
        examples = [error]
    elif "unexpected_index_list" in details or "partial_unexpected_index_list" in details:
        entries = details.get("partial_unexpected_index_list") or details["unexpected_index_list"]
        for entry in entries:
            if len(examples) == MAX_EXAMPLES:
                break
            name = str(entry.get(ROW, "?"))
            if str(column).startswith("video_"):
                name = name.rsplit("#", 1)[0]  # a per-video value repeats on every frame
            example = f"{name}: {_format(entry.get(column))}"
            if example not in examples:
                examples.append(example)
    elif not result.success and "partial_missing_list" in details:
        examples = [f"missing {_format(details['partial_missing_list'])}"]
    elif not result.success and "observed_value" in details:
        examples = [f"observed {_format(details['observed_value'])}"]
    return Outcome(
        suite=suite,
        expectation=config.type,
        column=column,
        rule=_rule(kwargs),
        success=bool(result.success),
        unexpected=details.get("unexpected_count"),
        rows=details.get("element_count"),
        examples=examples[:MAX_EXAMPLES],
        meaning=" ".join((config.meta or {}).get("notes", {}).get("content", [])),
    )


def _exception_message(info: Any) -> str | None:
    """The first error message in an expectation's exception_info (flat or per metric)."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message")).splitlines()[0]
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message")).splitlines()[0]
    return None


def _rule(kwargs: Mapping[str, Any]) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and high is not None:
        return f"in [{_format(low)}, {_format(high)}]"
    if low is not None:
        return f">= {_format(low)}"
    if high is not None:
        return f"<= {_format(high)}"
    if "value_set" in kwargs:
        return f"in {_format(kwargs['value_set'])}"
    return ""


def _format(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, list | tuple | set):
        return "{" + ", ".join(_format(item) for item in value) + "}"
    return str(value)
