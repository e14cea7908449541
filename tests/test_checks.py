"""Data validation: Great Expectations suites over frame statistics, evaluation sets, results.

Each test builds tiny data with the real extract and noise stages, breaks it the way a real
camera or upload would, and checks that validation names the failed expectation.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import write_dark_camera_video, write_params
from test_extract import _write_stills
from typer.testing import CliRunner

from denoise.cli import app
from denoise.core.config import Params, default_params, params_from_dict, params_to_dict
from denoise.core.errors import ConfigError, ValidationError
from denoise.data.extract import MANIFEST_NAME
from denoise.stages.extract import run as run_extract
from denoise.stages.noise import run as run_noise
from denoise.stages.validate import run as run_validate
from denoise.validation.outcomes import RESULTS_JSON
from denoise.validation.results import check_results
from denoise.validation.tables import evaluation_set_table


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 4.0) -> Path:
    """An MJPG video of the given RGB uint8 (H, W, 3) frames."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _structured_frame(size: int = 32) -> np.ndarray:
    """One frame with gradients and a square: bright and detailed enough to pass on its own."""
    rows, cols = np.mgrid[0:size, 0:size]
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[..., 1] = (cols * 255 // size).astype(np.uint8)
    rgb[..., 2] = (rows * 255 // size).astype(np.uint8)
    rgb[8:16, 16:24] = (200, 120, 40)
    return rgb


def _prepare(params: Params) -> None:
    run_extract(params)
    run_noise(params)


def _error(params: Params) -> str:
    with pytest.raises(ValidationError) as caught:
        run_validate(params)
    message = str(caught.value)
    assert "\n" not in message
    return message


def _results(params: Params) -> dict:
    return json.loads((Path(params.paths.validation) / RESULTS_JSON).read_text())


def test_good_tiny_data_passes_and_writes_the_report(params: Params) -> None:
    _prepare(params)
    summary = run_validate(params)
    assert [suite.name for suite in summary.suites] == ["frames", "evaluation_sets"]
    assert all(suite.success for suite in summary.suites)
    assert summary.suites[0].rows == 12
    report = Path(params.paths.validation)
    assert summary.report == report / "index.html" and summary.report.is_file()
    assert (report / "gx" / "data_docs" / "index.html").is_file()
    assert (report / "gx" / "data_docs" / "expectations" / "frames.html").is_file()
    results = _results(params)
    assert results["success"] is True
    assert set(results["suites"]) == {"frames", "evaluation_sets"}
    # Nothing of Great Expectations is written outside the report folder.
    assert sorted(path.name for path in report.parent.iterdir()) == ["validation"]
    # The verdicts and the report are logged to an MLflow child run of the pipeline's run.
    run = _validation_run(params)
    assert run.data.metrics == {
        "frames.passed": 1.0,
        "evaluation_sets.passed": 1.0,
        "failed_expectations": 0.0,
    }
    logged = _artifacts(run.info.run_id)
    assert {"validation/index.html", "validation/results.json"} <= logged
    assert "validation/gx/data_docs/expectations/frames.html" in logged


def _validation_run(params: Params) -> Any:
    """The MLflow child run the validate stage logged for these params (the store is shared;
    outside a flow, the stage's own flat run holds it)."""
    import mlflow

    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=(
            "tags.`denoise.stage` = 'validate' and "
            f"params.`paths.validation` = '{params.paths.validation}'"
        ),
        output_format="list",
    )
    (run,) = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    return run


def _artifacts(run_id: str, path: str = "") -> set[str]:
    from mlflow.tracking import MlflowClient

    found = set()
    for entry in MlflowClient().list_artifacts(run_id, path):
        found |= _artifacts(run_id, entry.path) if entry.is_dir else {entry.path}
    return found


@pytest.mark.parametrize("kind", ["all-black", "dark-camera"])
def test_a_black_camera_fails_on_brightness_and_contrast(params: Params, kind: str) -> None:
    raw = Path(params.paths.raw)
    if kind == "all-black":
        # Exact zeros have equal channels: extract accepts them only with allow_greyscale.
        params = dataclasses.replace(
            params, extract=dataclasses.replace(params.extract, allow_greyscale=True)
        )
        _write_video(raw / "black.avi", [np.zeros((32, 32, 3), np.uint8)] * 12)
    else:
        write_dark_camera_video(raw / "black.avi")
    _prepare(params)
    message = _error(params)
    assert message.startswith("validation failed")
    assert "frames: expect_column_values_to_be_between('mean') in [0.02, 0.98]" in message
    assert "frames: expect_column_values_to_be_between('std') >= 0.02: 12 of 24 rows" in message
    assert re.search(r"e\.g\. black\.avi#0: 0[.\d]*, black\.avi#1", message), message
    assert "tiny.avi" not in message
    # The report is written before the error: the user can read why it failed.
    results = _results(params)
    assert results["success"] is False and results["suites"]["frames"]["success"] is False
    metrics = _validation_run(params).data.metrics
    assert metrics["frames.passed"] == 0.0 and metrics["failed_expectations"] >= 2


def test_frames_of_another_size_fail(params: Params) -> None:
    smaller = dataclasses.replace(params, extract=dataclasses.replace(params.extract, size=16))
    _prepare(smaller)  # extracted with size 16; params.yaml now says 32
    message = _error(params)
    assert "frames: expect_column_values_to_be_in_set('height') in {32}: 12 of 12 rows" in message
    assert "e.g. tiny.avi#0: 16, tiny.avi#1: 16, tiny.avi#2: 16" in message
    assert "expect_column_values_to_be_in_set('width')" in message


def test_a_frozen_frame_repeated_fails_on_duplicates(params: Params) -> None:
    _write_video(Path(params.paths.raw) / "frozen.avi", [_structured_frame()] * 12)
    _prepare(params)
    message = _error(params)
    assert (
        "frames: expect_column_values_to_be_between('video_duplicate_fraction') <= 0.1: "
        "12 of 24 rows, e.g. frozen.avi: 0.9167" in message
    )
    # The same pixels in train, validation and test: the splits leak into each other.
    assert "expect_column_values_to_be_in_set('shared_with_other_split') in {False}" in message
    assert "'mean'" not in message and "'std'" not in message


def test_overlapping_splits_fail(params: Params) -> None:
    _prepare(params)
    path = Path(params.paths.frames) / MANIFEST_NAME
    manifest = pd.read_parquet(path)
    manifest.loc[manifest["frame_index"] == 2, "split"] = "test"  # inside the train block
    manifest.to_parquet(path, index=False)
    message = _error(params)
    assert "expect_column_values_to_be_in_set('overlaps_other_split') in {False}" in message
    assert "tiny.avi#2: True" in message


def test_an_evaluation_set_whose_noise_does_not_match_its_sigma_fails(params: Params) -> None:
    _prepare(params)
    set_dir = Path(params.paths.evalsets) / "test"
    clean = np.load(set_dir / "clean.npy")
    rng = np.random.default_rng(0)
    wrong = clean + rng.normal(0.0, 15.0 / 255.0, clean.shape).astype(np.float32)
    np.save(set_dir / "gaussian-25.npy", wrong)  # declared sigma 25, drawn with 15
    message = _error(params)
    assert (
        "evaluation_sets: expect_column_values_to_be_between('sigma_relative_error') <= 0.05: "
        "3 of 56 rows, e.g. test/gaussian-25/tiny.avi#" in message
    )
    assert "frames:" not in message
    table = evaluation_set_table(Path(params.paths.evalsets))
    bad = table[table["row"].str.startswith("test/gaussian-25/")]
    assert np.allclose(bad["empirical_sigma"], 15.0, atol=1.0)


def test_an_as_saved_level_off_the_8_bit_grid_fails(params: Params) -> None:
    _prepare(params)
    path = Path(params.paths.evalsets) / "test" / "gaussian-25-saved.npy"
    np.save(path, np.load(path) + np.float32(0.3 / 255))  # no longer k / 255
    message = _error(params)
    assert "expect_column_values_to_be_in_set('on_8_bit_grid') in {True}: 3 of 56 rows" in message


def test_non_finite_evaluation_values_fail(params: Params) -> None:
    _prepare(params)
    path = Path(params.paths.evalsets) / "validation" / "gaussian-50.npy"
    noisy = np.load(path)
    noisy[1, 0, 0, 0] = np.nan
    np.save(path, noisy)
    message = _error(params)
    assert "expect_column_values_to_be_in_set('finite') in {True}: 1 of 56 rows" in message


def test_validate_command_prints_one_error_line(params: Params, tmp_path: Path) -> None:
    write_dark_camera_video(Path(params.paths.raw) / "black.avi")
    _prepare(params)
    params_file = write_params(params, tmp_path / "params.yaml")
    result = CliRunner().invoke(app, ["validate", "--params", str(params_file)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: validation failed")
    assert "expect_column_values_to_be_between('std')" in lines[0]
    assert f"report: {params.paths.validation}/index.html" in lines[0]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"frames": {"mean_min": 0.9, "mean_max": 0.1}},
            "validate.frames.mean_min: must be < mean_max, got 0.9 and 0.1",
        ),
        ({"frames": {"mean_max": 1.5}}, "validate.frames.mean_max: must be <= 1, got 1.5"),
        ({"frames": {"min_frames": 3}}, "validate.frames.min_frames: unknown key"),
        (
            {"evaluation_sets": {"sigma_tolerance": 0}},
            "validate.evaluation_sets.sigma_tolerance: must be > 0",
        ),
        ({"results": {"psnr_min": 70}}, "validate.results.psnr_min: must be < psnr_max"),
    ],
)
def test_bad_thresholds_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        params_from_dict(_validate_with(values))


def _validate_with(changes: dict[str, dict[str, float]]) -> dict:
    """params.yaml's mapping with the validate section's `changes` applied."""
    values = params_to_dict(default_params())
    for section, settings in changes.items():
        values["validate"][section].update(settings)
    return values


# ----------------------------------------------------------------------------- results


def _metrics(model_psnr: dict[str, float], noisy: float = 20.0) -> dict:
    """A metrics.json mapping as the evaluate stage writes it, test set at three levels."""
    levels = {}
    for sigma, offset in ((15, 4.0), (25, 0.0), (50, -6.0)):
        methods = {"noisy": noisy + offset, "blur": noisy + offset + 2.0}
        methods.update({name: value + offset for name, value in model_psnr.items()})
        levels[f"gaussian-{sigma}"] = {
            name: {"psnr": value, "ssim": 0.7, "ms_per_frame": 1.5, "images": 3}
            for name, value in methods.items()
        }
    return {"sets": {"test": {"images": 3, "height": 32, "width": 32, "levels": levels}}}


def _with_margin(params: Params, margin: float) -> Params:
    results = dataclasses.replace(params.validate.results, min_gain_over_noisy_db=margin)
    return dataclasses.replace(
        params, validate=dataclasses.replace(params.validate, results=results)
    )


def test_results_gate_promotes_only_models_that_beat_the_noisy_input(params: Params) -> None:
    strict = _with_margin(params, 1.0)
    metrics = _metrics({"paper_cae": 23.5, "dense_ae": 20.4})
    check = check_results(metrics, strict)
    assert check.reference == "test/gaussian-25"
    assert check.noisy_psnr == 20.0
    assert check.gain_db == pytest.approx({"paper_cae": 3.5, "dense_ae": 0.4})
    assert check.eligible == {"paper_cae": True, "dense_ae": False}
    assert check.report is None
    # Without a noisy score, the expected PSNR of unclipped noise stands in: 20 log10(255/25).
    for level in metrics["sets"]["test"]["levels"].values():
        del level["noisy"]
    assert check_results(metrics, strict).noisy_psnr == pytest.approx(20.17, abs=0.01)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_results_gate_fails_on_a_non_finite_metric(params: Params, bad: float) -> None:
    metrics = _metrics({"paper_cae": 23.5, "dense_ae": 22.0})
    metrics["sets"]["test"]["levels"]["gaussian-50"]["dense_ae"]["psnr"] = bad
    report_dir = Path(params.paths.validation).with_name("results-check")
    with pytest.raises(ValidationError) as caught:
        check_results(metrics, params, report_dir=report_dir)
    message = str(caught.value)
    assert (
        "results: expect_column_values_to_be_in_set('finite') in {True}: 1 of 12 rows, "
        "e.g. test/gaussian-50/dense_ae: False" in message
    )
    assert f"report: {report_dir}/index.html" in message
    assert json.loads((report_dir / "results.json").read_text())["success"] is False


def test_results_gate_fails_on_an_implausible_psnr(params: Params) -> None:
    metrics = _metrics({"paper_cae": 95.0, "dense_ae": 22.0})
    with pytest.raises(ValidationError, match=r"between\('psnr'\) in \[5, 60\]: 3 of 12 rows"):
        check_results(metrics, params)


def test_results_gate_names_a_missing_score(params: Params) -> None:
    metrics = _metrics({"paper_cae": 23.5})
    with pytest.raises(ValidationError, match="no score for dense_ae at test/gaussian-25"):
        check_results(metrics, params)


# ----------------------------------------------------------------------------- Data Docs


def _page_text(path: Path) -> str:
    """The text of a page as headless Chromium renders it (scripts run, DOM dumped)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium; make test does)")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def test_data_docs_open_in_a_browser_and_show_suites_and_results(params: Params) -> None:
    _write_video(Path(params.paths.raw) / "frozen.avi", [_structured_frame()] * 12)
    _prepare(params)
    with pytest.raises(ValidationError):
        run_validate(params)
    report = Path(params.paths.validation)
    summary = _page_text(report / "index.html")
    assert "denoise data validation" in summary and "Overall: failed" in summary
    assert "Suite frames: failed" in summary and "Suite evaluation_sets: passed" in summary
    assert (
        "Few exact or near duplicates per video: no frozen camera. "
        "expect_column_values_to_be_between video_duplicate_fraction <= 0.1 failed 12 of 24 "
        "frozen.avi: 0.9167" in summary
    )
    assert "expect_column_values_to_be_in_set height in {32} passed 0 of 24" in summary
    # The Great Expectations page the summary links to: the suite, its status and the rows.
    results = _results(params)
    assert results["suites"]["frames"]["success"] is False
    (link,) = re.findall(
        r'href="(gx/data_docs/validations/frames/[^"]+)"', (report / "index.html").read_text()
    )
    page = _page_text(report / link)
    assert "Expectation Suite: frames" in page and "Status: Failed" in page
    assert "video_duplicate_fraction" in page and "frozen.avi#0" in page


def test_a_short_train_only_folder_passes_the_length_check(params: Params) -> None:
    _write_stills(Path(params.paths.raw) / "photos", 4)  # fewer than min_frames_per_video (6)
    _prepare(params)
    message = _error(params)
    assert "expect_column_values_to_be_between('split_frames') >= 6" in message
    assert "4 of 16 rows, e.g. photos#0: 4," in message
    train_only = dataclasses.replace(params.extract, train_only=["photos"])
    params = dataclasses.replace(params, extract=train_only)
    _prepare(params)
    assert all(suite.success for suite in run_validate(params).suites)
