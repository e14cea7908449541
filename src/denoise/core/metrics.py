"""Image quality metrics, as docs/benchmarks.md states them (KAIR/BasicSR conventions)."""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity


def _check_pair(clean: np.ndarray, denoised: np.ndarray) -> None:
    if clean.shape != denoised.shape:
        raise ValueError(f"image shapes differ: {clean.shape} and {denoised.shape}")
    if clean.ndim != 3:
        raise ValueError(f"expected one (H, W, C) image, got shape {clean.shape}")


def psnr(clean: np.ndarray, denoised: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB of one RGB image, data range 1.0; infinite for identical images.

    clean, denoised: float (H, W, C); clean in [0, 1], denoised may lie outside it.
    """
    _check_pair(clean, denoised)
    mse = float(np.mean((clean.astype(np.float64) - denoised.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def ssim(clean: np.ndarray, denoised: np.ndarray, data_range: float = 1.0) -> float:
    """SSIM with Wang et al.'s settings (Gaussian 11x11 window, sigma 1.5, population
    covariance), computed per channel and averaged. clean, denoised: float (H, W, C).
    """
    _check_pair(clean, denoised)
    if min(clean.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {clean.shape[:2]}")
    return float(
        structural_similarity(
            clean.astype(np.float64),
            denoised.astype(np.float64),
            data_range=data_range,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def temporal_psnr(clean: np.ndarray, denoised: np.ndarray, data_range: float = 1.0) -> float:
    """tPSNR in dB of a clip: how steady the denoised frames are against the clean ones.

    The temporal error of frame t is e_t = (d_t - d_{t-1}) - (c_t - c_{t-1}), and
    tPSNR = 10 log10(data_range^2 / mean(e_t^2)) over t = 1..T-1 and every pixel: infinite for
    a perfect denoiser, lower as the residual changes from frame to frame (flicker).
    clean, denoised: float (T, H, W, C) clips of at least two frames.
    """
    if clean.shape != denoised.shape:
        raise ValueError(f"clip shapes differ: {clean.shape} and {denoised.shape}")
    if clean.ndim != 4 or clean.shape[0] < 2:
        raise ValueError(f"expected a (T, H, W, C) clip of 2 frames or more, got {clean.shape}")
    residual = denoised.astype(np.float64) - clean.astype(np.float64)
    mse = float(np.mean(np.diff(residual, axis=0) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)
