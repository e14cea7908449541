from __future__ import annotations

import math

import numpy as np
import pytest

from denoise.core.metrics import psnr, ssim


def test_identical_images() -> None:
    image = np.random.default_rng(0).random((32, 32, 3))
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0)


def test_psnr_of_a_known_error() -> None:
    clean = np.zeros((16, 16, 3))
    assert psnr(clean, clean + 0.1) == pytest.approx(20.0)
    assert psnr(clean, clean + 0.01) == pytest.approx(40.0)
    assert psnr(clean, clean - 1.0) == pytest.approx(0.0)


def test_ssim_drops_with_noise_and_is_symmetric() -> None:
    rng = np.random.default_rng(0)
    clean = rng.random((64, 64, 3))
    slightly = clean + rng.normal(0, 0.02, clean.shape)
    heavily = clean + rng.normal(0, 0.2, clean.shape)
    assert 1.0 > ssim(clean, slightly) > ssim(clean, heavily)
    assert ssim(clean, heavily) == pytest.approx(ssim(heavily, clean))


def test_ssim_of_constant_images() -> None:
    grey = np.full((16, 16, 3), 0.5)
    assert ssim(grey, grey) == pytest.approx(1.0)
    assert ssim(grey, grey + 0.1) < 1.0


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="one \\(H, W, C\\) image"):
        psnr(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 3)))
