from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from denoise.core.baselines import bm3d, gaussian_blur, median, non_local_means
from denoise.core.config import Params
from denoise.core.images import triptych
from denoise.data.evalsets import load_set
from denoise.stages.evaluate import model_denoiser, score
from denoise.stages.evaluate import run as run_evaluate
from denoise.stages.extract import run as run_extract
from denoise.stages.noise import run as run_noise
from denoise.stages.train import run as run_train


@pytest.mark.parametrize("method", [gaussian_blur, median, non_local_means, bm3d])
def test_classical_methods_beat_the_noisy_input(method) -> None:
    from denoise.core.noise import add_gaussian_noise
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
    methods = {"noisy", "blur", "median", "nlm", "bm3d", "paper_cae", "dense_ae"}
    for set_metrics in metrics["sets"].values():
        assert set(set_metrics["levels"]) == {
            "gaussian-15",
            "gaussian-25",
            "gaussian-25-saved",
            "gaussian-50",
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
