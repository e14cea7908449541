"""What validating a suite produced (per expectation, per suite) and the report's file names."""

from __future__ import annotations

import dataclasses

# The suites, by the table each checks.
FRAMES, EVALUATION_SETS, RESULTS = "frames", "evaluation_sets", "results"
ROW = "row"  # the column that names each row in messages and in the Data Docs
SUMMARY_HTML = "index.html"  # plain summary page, no scripts: opens offline
RESULTS_JSON = "results.json"
GX_PROJECT = "gx"  # the Great Expectations project folder inside a report folder
DATA_DOCS = "data_docs"  # Data Docs site, inside the project folder
MAX_EXAMPLES = 3  # offending rows quoted per failed expectation
MAX_FAILURES_IN_MESSAGE = 6


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One expectation's result, in the words the message and the summary page use."""

    suite: str
    expectation: str
    column: str | None
    rule: str
    success: bool
    unexpected: int | None  # rows that broke it (None for table-level expectations)
    rows: int | None
    examples: list[str]
    meaning: str  # what the expectation guards against, in words

    def describe(self) -> str:
        target = f"{self.expectation}({self.column!r})" if self.column else self.expectation
        counts = f": {self.unexpected} of {self.rows} rows" if self.unexpected is not None else ""
        examples = f", e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{self.suite}: {target} {self.rule}{counts}{examples}"


@dataclasses.dataclass(frozen=True)
class SuiteResult:
    name: str
    success: bool
    rows: int
    outcomes: list[Outcome]
    data_docs: str | None  # the Great Expectations validation page, relative to the report


def failures(results: list[SuiteResult]) -> list[Outcome]:
    """Every failed expectation, suite by suite."""
    return [outcome for result in results for outcome in result.outcomes if not outcome.success]
