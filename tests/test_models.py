from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from denoise.config import Train
from denoise.models import AveragePatches, ExtractPatches, build_model, count_parameters


def test_model_summary_reports_the_papers_parameter_count() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "denoise", "model-summary", "paper_cae"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "(None, 200, 200, 3)" in result.stdout
    assert "Trainable params: 29,507" in result.stdout


def test_dense_ae_has_the_same_order_of_parameters() -> None:
    assert count_parameters(build_model("dense_ae", Train())) == 29_024


@pytest.mark.parametrize("name", ["paper_cae", "dense_ae"])
@pytest.mark.parametrize("size", [32, 48, 200])
def test_any_valid_size_in_same_size_out(name: str, size: int) -> None:
    model = build_model(name, Train())
    noisy = np.random.default_rng(0).random((2, size, size, 3), dtype=np.float32)
    denoised = np.asarray(model(noisy))
    assert denoised.shape == noisy.shape
    assert denoised.min() >= 0.0 and denoised.max() <= 1.0


def test_patch_extraction_and_averaging_invert_each_other() -> None:
    images = np.random.default_rng(0).random((2, 24, 32, 3), dtype=np.float32)
    vectors = np.asarray(ExtractPatches(8, 4)(images))
    assert vectors.shape == (2, 5, 7, 192)
    np.testing.assert_array_equal(vectors[1, 2, 3], images[1, 8:16, 12:20].reshape(-1))
    np.testing.assert_allclose(np.asarray(AveragePatches(8, 4)(vectors)), images, atol=1e-6)
