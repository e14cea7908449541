"""The validation report: the one-line failure message, results.json and a plain HTML page."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path
from typing import Any

from denoise.validation.outcomes import (
    DATA_DOCS,
    GX_PROJECT,
    MAX_FAILURES_IN_MESSAGE,
    SuiteResult,
    failures,
)


def _validation_page(directory: Path, suite: str) -> str | None:
    pages = sorted((directory / GX_PROJECT / DATA_DOCS / "validations" / suite).rglob("*.html"))
    return pages[-1].relative_to(directory).as_posix() if pages else None


def failure_message(results: list[SuiteResult], report: Path | None) -> str:
    """One line: which expectations failed, on which column, with a few offending rows."""
    failed = failures(results)
    shown = "; ".join(outcome.describe() for outcome in failed[:MAX_FAILURES_IN_MESSAGE])
    more = (
        f"; and {len(failed) - MAX_FAILURES_IN_MESSAGE} more"
        if len(failed) > MAX_FAILURES_IN_MESSAGE
        else ""
    )
    where = f" (report: {report})" if report is not None else ""
    return f"validation failed, {len(failed)} expectation(s){where}: {shown}{more}"


def _results_json(results: list[SuiteResult]) -> dict[str, Any]:
    """Verdicts only, no run times: the train stage depends on this file, so it changes only
    when a verdict does (the Great Expectations files carry times and ids)."""
    return {
        "success": all(result.success for result in results),
        "suites": {
            result.name: {
                "success": result.success,
                "rows": result.rows,
                "expectations": [
                    {
                        key: value
                        for key, value in dataclasses.asdict(outcome).items()
                        if key != "suite"
                    }
                    for outcome in result.outcomes
                ],
            }
            for result in results
        },
    }


def summary_html(results: list[SuiteResult]) -> str:
    """A static page (no scripts, opens offline) with every suite and expectation, linking to
    the Great Expectations Data Docs pages."""
    success = all(result.success for result in results)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>denoise data validation</title>',
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        ".passed{color:#1a7f37}.failed{color:#cf222e;font-weight:bold}</style></head><body>",
        "<h1>denoise data validation</h1>",
        f'<p>Overall: <span class="{_status(success)}">{_status(success)}</span>. '
        "Checked with Great Expectations; thresholds from params.yaml (validate).</p>",
    ]
    for result in results:
        met = sum(outcome.success for outcome in result.outcomes)
        links = [f'<a href="{GX_PROJECT}/{DATA_DOCS}/expectations/{result.name}.html">suite</a>']
        if result.data_docs:
            links.insert(0, f'<a href="{html.escape(result.data_docs)}">validation result</a>')
        parts += [
            f'<h2>Suite {html.escape(result.name)}: <span class="{_status(result.success)}">'
            f"{_status(result.success)}</span></h2>",
            f"<p>{result.rows} rows; {met} of {len(result.outcomes)} expectations met. "
            f"Great Expectations Data Docs: {' · '.join(links)}</p>",
            "<table><tr><th>checks that</th><th>expectation</th><th>column</th><th>rule</th>"
            "<th>result</th><th>unexpected rows</th><th>examples</th></tr>",
        ]
        for outcome in result.outcomes:
            counts = (
                f"{outcome.unexpected} of {outcome.rows}" if outcome.unexpected is not None else ""
            )
            cells = [
                outcome.meaning,
                outcome.expectation,
                outcome.column or "(table)",
                outcome.rule,
                _status(outcome.success),
                counts,
                "; ".join(outcome.examples),
            ]
            parts.append(
                "<tr>"
                + "".join(
                    f'<td class="{_status(outcome.success)}">{html.escape(cell)}</td>'
                    if index == 4
                    else f"<td>{html.escape(cell)}</td>"
                    for index, cell in enumerate(cells)
                )
                + "</tr>"
            )
        parts.append("</table>")
    parts.append(
        f'<p>All suites and runs: <a href="{GX_PROJECT}/{DATA_DOCS}/index.html">Data Docs '
        "index</a> (its tables load scripts from the internet).</p></body></html>"
    )
    return "\n".join(parts) + "\n"


def _status(success: bool) -> str:
    return "passed" if success else "failed"
