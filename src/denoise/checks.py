"""validate stage: Great Expectations suites over tables of statistics, never over pixels.

Three suites, each over one pandas table with a `row` column naming every row:

- frames: one row per extracted frame (the manifest's mean, std, pHash, time and split, plus
  the frame's shape, a hash of its pixels and its difference from the previous frame);
- evaluation_sets: one row per evaluation image and noise level (declared and empirical sigma);
- results: one row per evaluated set, noise level and method (PSNR, SSIM, time per frame).

The validate stage runs the first two between noise and train; the register stage runs the
third through check_results() before it registers anything. Each run writes a file-backed
Great Expectations project under its report folder, with its Data Docs (HTML), a plain
index.html summary that needs no network, and results.json; a failure raises ValidationError,
whose one line names the failed expectation, the column and a few offending rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from denoise.atomic import atomic_directory, write_json, write_text
from denoise.config import EvaluationSetChecks, Params, ResultChecks
from denoise.errors import DataError, ValidationError
from denoise.extract import GAP, SPLITS, load_manifest
from denoise.noise import EVALUATION_SPLITS, INDEX_NAME, level_name

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations import Expectation

FRAMES, EVALUATION_SETS, RESULTS = "frames", "evaluation_sets", "results"
ROW = "row"  # the column that names each row in messages and in the Data Docs
SUMMARY_HTML = "index.html"  # plain summary page, no scripts: opens offline
RESULTS_JSON = "results.json"
GX_PROJECT = "gx"  # the Great Expectations project folder inside a report folder
DATA_DOCS = "data_docs"  # Data Docs site, inside the project folder
MAX_EXAMPLES = 3  # offending rows quoted per failed expectation
MAX_FAILURES_IN_MESSAGE = 6


# ----------------------------------------------------------------------------- tables


def _frame_hash(frame: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=16).hexdigest()


def frame_table(
    manifest: pd.DataFrame, frames_dir: Path, near_duplicate_difference: float
) -> pd.DataFrame:
    """One row per extracted frame: the manifest's columns plus what the frames suite checks.

    Adds height, width, channels (the shard array's shape); difference: mean |frame - previous
    frame of the same video| on the [0, 1] scale (NaN for a video's first frame); duplicate: the
    frame repeats an earlier frame of its video exactly or differs from the previous one by
    less than near_duplicate_difference; per video, video_frames and video_duplicate_fraction;
    split_frames: video_frames of a source split in time, NaN for an extract.train_only one;
    overlaps_other_split: the frame's time lies in another split's time block of its video;
    shared_with_other_split: identical pixels appear in another split (of any video).
    """
    table = manifest.sort_values(["video", "timestamp_s", "frame_index"], kind="stable")
    table = table.reset_index(drop=True)
    shards: dict[str, np.ndarray] = {}
    shapes, hashes, differences, duplicates = [], [], [], []
    previous: np.ndarray | None = None
    seen: set[str] = set()
    for position, (video, shard, offset) in enumerate(
        zip(table["video"], table["shard"], table["offset"], strict=True)
    ):
        if shard not in shards:
            path = frames_dir / shard
            if not path.is_file():
                raise DataError(f"{path}: missing shard; rerun `denoise extract`")
            shards[shard] = np.load(path, mmap_mode="r")
        frame = np.asarray(shards[shard][offset])
        if position == 0 or video != table["video"].iat[position - 1]:
            previous, seen = None, set()
        digest = _frame_hash(frame)
        difference = (
            float(np.abs(frame.astype(np.float32) - previous).mean() / 255.0)
            if previous is not None and previous.shape == frame.shape
            else math.nan
        )
        shapes.append(frame.shape + (1,) * (3 - frame.ndim))
        hashes.append(digest)
        differences.append(difference)
        duplicates.append(digest in seen or difference < near_duplicate_difference)
        seen.add(digest)
        previous = frame.astype(np.float32)
    table.insert(
        0,
        ROW,
        [
            f"{video}#{index}"
            for video, index in zip(table["video"], table["frame_index"], strict=True)
        ],
    )
    table["height"] = [shape[0] for shape in shapes]
    table["width"] = [shape[1] for shape in shapes]
    table["channels"] = [shape[2] for shape in shapes]
    table["content"] = hashes
    table["difference"] = differences
    table["duplicate"] = duplicates
    by_video = table.groupby("video", sort=False)
    table["video_frames"] = by_video["video"].transform("size").astype(int)
    table["split_frames"] = table["video_frames"].astype(float).where(~table["train_only"])
    table["video_duplicate_fraction"] = by_video["duplicate"].transform("mean").astype(float)
    table["overlaps_other_split"] = _overlaps_other_split(table)
    table["shared_with_other_split"] = _shared_with_other_split(table)
    return table


def _overlaps_other_split(table: pd.DataFrame) -> list[bool]:
    """Per frame: its time lies within another split's [first, last] time of the same video."""
    used = table[table["split"] != GAP]
    blocks: dict[str, list[tuple[str, float, float]]] = {}
    for (video, split), times in used.groupby(["video", "split"])["timestamp_s"]:
        blocks.setdefault(str(video), []).append((str(split), times.min(), times.max()))
    return [
        split != GAP
        and any(
            other != split and low <= time <= high for other, low, high in blocks.get(video, [])
        )
        for video, split, time in zip(
            table["video"], table["split"], table["timestamp_s"], strict=True
        )
    ]


def _shared_with_other_split(table: pd.DataFrame) -> list[bool]:
    """Per frame: the same pixels occur in another split, in any video (leakage)."""
    used = table[table["split"] != GAP]
    splits_of = used.groupby("content")["split"].agg(lambda splits: set(splits))
    return [
        split != GAP and len(splits_of.get(content, set())) > 1
        for split, content in zip(table["split"], table["content"], strict=True)
    ]


def evaluation_set_table(evalsets_dir: Path) -> pd.DataFrame:
    """One row per evaluation image and noise level, from the arrays the noise stage wrote.

    empirical_sigma is std(noisy - clean) * 255 per image; sigma_relative_error is
    |empirical - declared| / max(declared, 1) for Gaussian levels and NaN (not checked) for
    the other noise kinds; finite says whether every clean and noisy value is finite.
    """
    index_path = evalsets_dir / INDEX_NAME
    if not index_path.is_file():
        raise DataError(f"{index_path}: missing; run `denoise noise` first")
    index = json.loads(index_path.read_text())
    rows: list[dict[str, Any]] = []
    for set_name, info in index["sets"].items():
        clean = np.load(evalsets_dir / set_name / "clean.npy")
        for level, level_info in info["levels"].items():
            path = evalsets_dir / set_name / f"{level}.npy"
            if not path.is_file():
                raise DataError(f"{path}: missing; rerun `denoise noise`")
            noisy = np.load(path)
            for position, image in enumerate(info["images"]):
                rows.append(
                    _evaluation_row(set_name, level, level_info, image, clean, noisy, position)
                )
    return pd.DataFrame(rows)


def _evaluation_row(
    set_name: str,
    level: str,
    level_info: Mapping[str, Any],
    image: str,
    clean: np.ndarray,
    noisy: np.ndarray,
    position: int,
) -> dict[str, Any]:
    clean_image = clean[position] if position < len(clean) else np.zeros((0, 0, 0), np.float32)
    noisy_image = noisy[position] if position < len(noisy) else np.zeros((0, 0, 0), np.float32)
    shape_matches = clean_image.shape == noisy_image.shape and clean_image.size > 0
    finite = bool(np.isfinite(clean_image).all() and np.isfinite(noisy_image).all())
    empirical = (
        float(np.std(noisy_image.astype(np.float64) - clean_image) * 255.0)
        if shape_matches and finite
        else math.nan
    )
    saved = bool(level_info.get("as_saved", False))
    # Clipping shrinks the noise of an as-saved level; its unclipped twin's sigma is checked.
    gaussian = level_info["kind"] == "gaussian" and not saved
    declared = float(level_info["level"]) if gaussian else math.nan
    on_8_bit_grid = (
        bool(np.array_equal(np.round(np.clip(noisy_image, 0, 1) * 255) / 255, noisy_image))
        if saved and finite
        else not saved
    )
    return {
        ROW: f"{set_name}/{level}/{image}",
        "set": set_name,
        "level": level,
        "kind": level_info["kind"],
        "image": image,
        "height": clean_image.shape[0] if clean_image.ndim == 3 else 0,
        "width": clean_image.shape[1] if clean_image.ndim == 3 else 0,
        "shape_matches": shape_matches,
        "finite": finite,
        "as_saved": saved,
        "on_8_bit_grid": on_8_bit_grid,
        "clean_min": float(clean_image.min()) if clean_image.size else math.nan,
        "clean_max": float(clean_image.max()) if clean_image.size else math.nan,
        "declared_sigma": declared,
        "empirical_sigma": empirical,
        "sigma_relative_error": abs(empirical - declared) / max(declared, 1.0)
        if gaussian
        else math.nan,
    }


def results_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per set, noise level and method of the evaluate stage's metrics.json."""
    rows = []
    for set_name, set_metrics in metrics.get("sets", {}).items():
        for level, methods in set_metrics.get("levels", {}).items():
            for method, result in methods.items():
                values = [float(result.get(key, math.nan)) for key in ("psnr", "ssim")]
                values.append(float(result.get("ms_per_frame", math.nan)))
                rows.append(
                    {
                        ROW: f"{set_name}/{level}/{method}",
                        "set": set_name,
                        "level": level,
                        "method": method,
                        "psnr": values[0],
                        "ssim": values[1],
                        "ms_per_frame": values[2],
                        "images": int(result.get("images", 0)),
                        "finite": all(math.isfinite(value) for value in values),
                    }
                )
    columns = [ROW, "set", "level", "method", "psnr", "ssim", "ms_per_frame", "images", "finite"]
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------- suites


def frames_expectations(params: Params) -> list[Expectation]:
    """The frames suite: enough frames per video, the configured shape, not black, white,
    blank or frozen, and splits that share neither time blocks nor pixels."""
    import great_expectations.expectations as gxe

    config = params.validate.frames
    size = params.extract.size
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_notes("There are frames.")),
        gxe.ExpectColumnValuesToBeBetween(
            column="split_frames",
            min_value=config.min_frames_per_video,
            meta=_notes(
                "Each video split in time gives at least validate.frames.min_frames_per_video "
                "frames (extract.train_only sources are not split, so not counted)."
            ),
        ),
        *[
            gxe.ExpectColumnValuesToBeInSet(
                column=column,
                value_set=[expected],
                meta=_notes(f"Frames are {size}x{size} RGB, as extract.size says."),
            )
            for column, expected in (("height", size), ("width", size), ("channels", 3))
        ],
        gxe.ExpectColumnValuesToBeBetween(
            column="mean",
            min_value=config.mean_min,
            max_value=config.mean_max,
            meta=_notes("Mean brightness in range: no black or white (dead) camera."),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="std",
            min_value=config.min_std,
            meta=_notes("Standard deviation above validate.frames.min_std: no blank frames."),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="video_duplicate_fraction",
            max_value=config.max_duplicate_fraction,
            meta=_notes("Few exact or near duplicates per video: no frozen camera."),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="split",
            value_set=[*SPLITS, GAP],
            meta=_notes("Every frame is train, validation, test or gap (unused)."),
        ),
        gxe.ExpectColumnDistinctValuesToContainSet(
            column="split",
            value_set=["train", *EVALUATION_SPLITS],
            meta=_notes("There are training, validation and test frames."),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="overlaps_other_split",
            value_set=[False],
            meta=_notes("Splits are disjoint time blocks of each video."),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="shared_with_other_split",
            value_set=[False],
            meta=_notes("No frame's pixels appear in two splits (no leakage)."),
        ),
    ]


def evaluation_set_expectations(config: EvaluationSetChecks) -> list[Expectation]:
    """The evaluation_sets suite: finite values, clean images in [0, 1], Gaussian noise whose
    empirical sigma is within the tolerance of the declared one, and as-saved levels on the
    8-bit grid."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_notes("There are images.")),
        gxe.ExpectColumnValuesToBeInSet(
            column="finite",
            value_set=[True],
            meta=_notes("Every clean and noisy value is finite."),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="shape_matches",
            value_set=[True],
            meta=_notes("Each noisy image has its clean image's shape."),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="on_8_bit_grid",
            value_set=[True],
            meta=_notes("As-saved levels hold values in [0, 1] on the 1/255 grid of 8 bits."),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="clean_min", min_value=0.0, meta=_notes("Clean images are in [0, 1].")
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="clean_max", max_value=1.0, meta=_notes("Clean images are in [0, 1].")
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="sigma_relative_error",
            max_value=config.sigma_tolerance,
            meta=_notes(
                "Gaussian levels: |empirical sigma / declared sigma - 1| is at most "
                "validate.evaluation_sets.sigma_tolerance."
            ),
        ),
    ]


def results_expectations(config: ResultChecks) -> list[Expectation]:
    """The results suite: every metric finite, PSNR in a plausible range, SSIM in [-1, 1]."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_notes("There are results.")),
        gxe.ExpectColumnValuesToBeInSet(
            column="finite",
            value_set=[True],
            meta=_notes("PSNR, SSIM and time per frame are finite numbers."),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="psnr",
            min_value=config.psnr_min,
            max_value=config.psnr_max,
            meta=_notes("PSNR (dB) between validate.results.psnr_min and psnr_max."),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="ssim", min_value=-1.0, max_value=1.0, meta=_notes("SSIM in [-1, 1].")
        ),
    ]


def _notes(text: str) -> dict[str, Any]:
    return {"notes": {"format": "markdown", "content": [text]}}


# ----------------------------------------------------------------------------- validation


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


def _validation_page(directory: Path, suite: str) -> str | None:
    pages = sorted((directory / GX_PROJECT / DATA_DOCS / "validations" / suite).rglob("*.html"))
    return pages[-1].relative_to(directory).as_posix() if pages else None


def failures(results: list[SuiteResult]) -> list[Outcome]:
    """Every failed expectation, suite by suite."""
    return [outcome for result in results for outcome in result.outcomes if not outcome.success]


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


# ----------------------------------------------------------------------------- stage


@dataclasses.dataclass(frozen=True)
class ValidationSummary:
    suites: list[SuiteResult]
    report: Path  # the summary page, index.html


def run(params: Params) -> ValidationSummary:
    """Validate the frames and evaluation sets; write the report under paths.validation.

    The report is written, and logged to an MLflow child run of the pipeline's run, before a
    failure is raised, so the user can read why it failed.
    """
    from denoise import tracking

    frames_dir = Path(params.paths.frames)
    frames = frame_table(
        load_manifest(frames_dir), frames_dir, params.validate.frames.near_duplicate_difference
    )
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
    with tracking.stage(params, "validate") as tracker:
        with atomic_directory(report_dir) as staging:
            results = validate_tables(tables, staging)
        with tracker.child("validate", tags={"denoise.kind": "validation"}):
            log_report(results, report_dir)
        if failures(results):
            raise ValidationError(failure_message(results, report))
    return ValidationSummary(suites=results, report=report)


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


# ----------------------------------------------------------------------------- results


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
    metrics: Mapping[str, Any], models: list[str], score_set: str, sigma: float
) -> tuple[str, float, dict[str, float]]:
    """PSNR of each model and of the noisy input on score_set at Gaussian sigma (0-255 scale).

    Returns (reference, noisy PSNR, {model: PSNR}). Where the noisy method was not evaluated,
    its PSNR is the expectation for unclipped noise, 20 log10(255 / sigma).
    """
    reference = f"{score_set}/{level_name('gaussian', sigma)}"
    level = metrics.get("sets", {}).get(score_set, {}).get("levels", {})
    results = level.get(level_name("gaussian", sigma))
    if results is None:
        raise ValidationError(
            f"results: no scores at {reference} in the metrics (evaluate scores "
            f"{', '.join(metrics.get('sets', {})) or 'no sets'}); rerun `denoise evaluate`"
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
) -> ResultsCheck:
    """Run the results suite on evaluate's metrics, then decide which models may be promoted.

    metrics: the mapping in paths.metrics. Raises ValidationError (after writing the report,
    when report_dir is given) if a metric is not finite or a PSNR is implausible. A model is
    eligible when it beats the noisy input by validate.results.min_gain_over_noisy_db on
    score_set at noise.validation_sigma; an ineligible model may be recorded, never promoted.
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
    reference, noisy, psnr = promotion_gains(
        metrics, list(params.train.models), score_set, params.noise.validation_sigma
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
