from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import pytest

from denoise.core.config import Params
from denoise.core.images import triptych
from denoise.core.metrics import temporal_psnr
from denoise.core.noise import add_gaussian_noise
from denoise.core.schema import VIDEO_BASELINE_METHODS
from denoise.data.evalsets import CLIP_SETS, load_set
from denoise.evaluation.adapters import model_denoiser
from denoise.evaluation.baselines import (
    VIDEO_METHODS,
    bm3d,
    bm4d_video,
    gaussian_blur,
    median,
    non_local_means,
)
from denoise.evaluation.scoring import score
from denoise.stages.evaluate import EvaluateSummary
from denoise.stages.evaluate import run as run_evaluate
from denoise.stages.extract import run as run_extract
from denoise.stages.noise import run as run_noise
from denoise.stages.train import run as run_train
from denoise.validation.tables import results_table


@pytest.mark.parametrize("method", [gaussian_blur, median, non_local_means, bm3d])
def test_classical_methods_beat_the_noisy_input(method) -> None:
    from denoise.data.evalsets import load_photograph

    clean = load_photograph("astronaut", 64)
    noisy = add_gaussian_noise(clean[None], 25.0, np.random.default_rng(0))[0]
    denoised = method(noisy, 25.0)
    assert denoised.shape == clean.shape and denoised.dtype == np.float32
    assert denoised.min() >= 0.0 and denoised.max() <= 1.0
    assert np.mean((denoised - clean) ** 2) < np.mean((noisy - clean) ** 2)


def test_triptych_layout() -> None:
    clean = np.zeros((10, 12, 3), np.float32)
    image = triptych(clean + 2.0, clean + 0.5, clean)
    assert image.shape == (10, 3 * 12 + 8, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == 255 and image[0, 12 + 4, 0] == 128 and image[0, -1, 0] == 0


def test_stage_scores_every_method_on_every_set(params: Params) -> None:
    run_extract(params)
    run_noise(params)
    run_train(params)
    summary = run_evaluate(params)
    metrics = json.loads(Path(params.paths.metrics).read_text())
    assert set(metrics["sets"]) == {"test", "photographs"}
    assert "clip_sets" not in metrics, "no clips unless extract.clips.per_split > 0"
    methods = {"noisy", "blur", "median", "nlm", "bm3d", "paper_cae", "dense_ae"}
    for set_metrics in metrics["sets"].values():
        assert set(set_metrics["levels"]) == {
            "gaussian-15",
            "gaussian-25",
            "gaussian-25-saved",
            "gaussian-50",
            "camera-low",
            "camera-high",
            "camera-high-jpeg80",
        }
        for name, level in set_metrics["levels"].items():
            # BM3D runs at evaluate.bm3d_levels only (tiny_params: its first image of each)
            if name in params.evaluate.bm3d_levels:
                assert set(level) == methods
                assert level["bm3d"]["images"] == 1
            else:
                assert set(level) == methods - {"bm3d"}
            for result in level.values():
                assert math.isfinite(result["psnr"]) and 0.0 < result["ssim"] <= 1.0
                assert result["ms_per_frame"] > 0.0
    noisy_25 = metrics["sets"]["test"]["levels"]["gaussian-25"]["noisy"]["psnr"]
    assert 19.0 < noisy_25 < 21.5, "noisy input at sigma 25 is about 20.2 dB"
    assert "| paper_cae |" in summary.table and "29,507" in summary.table
    evaluation = Path(params.paths.evaluation)
    assert (evaluation / "metrics.md").read_text() == summary.table
    assert len((evaluation / "per_image.csv").read_text().splitlines()) > 1
    assert (evaluation / "triptychs" / "test" / "gaussian-25" / "bm3d-0.png").is_file()
    assert (
        metrics["conventions"]["models"]
        == "one pass per image, float32, as params.apply serves them"
    )

    # With apply.self_ensemble, models are scored as they are served: their x8 self-ensemble.
    served = dataclasses.replace(
        params, apply=dataclasses.replace(params.apply, self_ensemble=True)
    )
    run_evaluate(served)
    ensembled = json.loads(Path(params.paths.metrics).read_text())
    assert ensembled["conventions"]["models"].startswith("x8 self-ensemble")
    clean, noisy_levels, _ = load_set(Path(params.paths.evalsets), "test")
    model = keras.models.load_model(Path(params.paths.models) / "paper_cae.keras")
    by_hand = score(
        clean,
        noisy_levels["gaussian-25"],
        25.0,
        model_denoiser(model, params.train.batch_size, ensemble=True),
        keep=0,
    )
    level = ensembled["sets"]["test"]["levels"]["gaussian-25"]
    single = metrics["sets"]["test"]["levels"]["gaussian-25"]
    assert level["paper_cae"]["psnr"] == pytest.approx(np.mean(by_hand.psnr), abs=1e-4)
    assert level["paper_cae"]["psnr"] != single["paper_cae"]["psnr"]
    assert level["bm3d"]["psnr"] == pytest.approx(single["bm3d"]["psnr"], abs=1e-5)


def _drifting_clip(frames: int, size: int) -> np.ndarray:
    """A smooth colour pattern drifting one pixel per frame: float32 (T, H, W, 3) in [0, 1]."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    clip = [
        np.stack(
            [
                0.5 + 0.4 * np.sin(6.0 * cols + 0.2 * step),
                0.1 + 0.8 * rows,
                0.5 + 0.4 * np.cos(5.0 * (rows + cols) + 0.1 * step),
            ],
            axis=-1,
        )
        for step in range(frames)
    ]
    return np.stack(clip).astype(np.float32)


def test_bm4d_on_a_whole_clip_beats_bm3d_frame_by_frame() -> None:
    """BM4D matches blocks across frames as well: on a slowly moving clip it recovers more
    than colour BM3D given each frame alone, and flickers less."""
    clean = _drifting_clip(6, 32)
    noisy = add_gaussian_noise(clean, 25.0, np.random.default_rng(0))
    whole = bm4d_video(noisy, 25.0)
    assert whole.shape == clean.shape and whole.dtype == np.float32
    assert whole.min() >= 0.0 and whole.max() <= 1.0
    by_frame = np.stack([bm3d(frame, 25.0) for frame in noisy])
    error = {
        name: np.mean((out - clean) ** 2) for name, out in (("bm4d", whole), ("bm3d", by_frame))
    }
    assert error["bm4d"] < error["bm3d"] < np.mean((noisy - clean) ** 2)
    assert temporal_psnr(clean, whole) > temporal_psnr(clean, by_frame)


def _evaluate_with_clips(params: Params) -> tuple[EvaluateSummary, dict[str, Any]]:
    """Extract with one 3-frame clip per split, noise, train, evaluate: the summary and
    metrics.json."""
    extract = dataclasses.replace(
        params.extract, clips=dataclasses.replace(params.extract.clips, length=3, per_split=1)
    )
    params = dataclasses.replace(params, extract=extract)
    run_extract(params)
    run_noise(params)
    run_train(params)
    summary = run_evaluate(params)
    return summary, json.loads(Path(params.paths.metrics).read_text())


def test_the_test_clips_are_scored_with_psnr_and_tpsnr(params: Params) -> None:
    """With extract.clips on, every method is scored on the test clips (clips-validation
    selects models, as validation does): frame methods frame by frame, BM4D on whole clips."""
    summary, metrics = _evaluate_with_clips(params)
    (scored,) = metrics["clip_sets"].values()
    assert list(metrics["clip_sets"]) == ["clips-test"]
    assert (scored["clips"], scored["frames"], scored["height"]) == (1, 3, 32)
    frame_methods = {"noisy", "blur", "median", "nlm", "paper_cae", "dense_ae"}
    for level, results in scored["levels"].items():
        heavy = {"bm3d", "bm4d"} if level in params.evaluate.bm3d_levels else set()
        assert set(results) == frame_methods | heavy, level
    clean, noisy_levels, _ = load_set(Path(params.paths.evalsets), "clips-test", CLIP_SETS)
    at_25 = scored["levels"]["gaussian-25"]
    assert at_25["noisy"]["tpsnr"] == pytest.approx(
        temporal_psnr(clean[0], noisy_levels["gaussian-25"][0]), abs=1e-6
    )
    assert 19.0 < at_25["noisy"]["psnr"] < 21.5
    assert at_25["bm4d"]["psnr"] > at_25["noisy"]["psnr"] + 3.0
    assert at_25["bm4d"]["tpsnr"] > at_25["noisy"]["tpsnr"]
    assert "**clips-test** (1 clips of 3 frames, 32x32)" in summary.table
    assert "| bm4d | - | " in summary.table  # not run at sigma 15
    strips = Path(params.paths.evaluation) / "strips" / "clips-test" / "gaussian-25"
    assert {path.stem for path in strips.glob("*.png")} == frame_methods | {"bm3d", "bm4d"}
    strip = cv2.imread(str(strips / "bm4d.png"))
    assert strip.shape == (3 * 32 + 2 * 4, 3 * 32 + 8, 3), "a row per frame: noisy|bm4d|clean"
    # The register stage's results suite checks the clip scores too.
    rows = results_table(metrics).set_index("row")
    assert rows.loc["clips-test/gaussian-25/bm4d", "images"] == 1


def test_bm4d_runs_only_when_evaluate_methods_names_it(params: Params) -> None:
    """BM4D takes seconds a clip frame: left out of evaluate.methods, no clip set runs it."""
    assert set(VIDEO_METHODS) == set(VIDEO_BASELINE_METHODS)
    evaluate = dataclasses.replace(params.evaluate, methods=["noisy", "nlm"])
    _, metrics = _evaluate_with_clips(dataclasses.replace(params, evaluate=evaluate))
    (scored,) = metrics["clip_sets"].values()
    for level, results in scored["levels"].items():
        assert set(results) == {"noisy", "nlm", *params.train.models}, level
