"""Classical denoisers to compare against, each a pure function of one image.

noisy: float32 (H, W, 3) RGB, nominally [0, 1] but unclipped; sigma on the 0-255 scale (the
noise level each method is told, where it takes one; scoring.per_image replaces a NaN, "not
told", with Donoho's estimate on the noisy image, core.noise_level). Every method returns
float32 (H, W, 3) clipped to [0, 1], as an image written to disk would be. BM4D
(`bm4d_video`) sees a whole clip.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from denoise.core.config import Evaluate
from denoise.core.schema import BASELINE_METHODS
from denoise.evaluation.scoring import BatchDenoiser, per_image, told_or_estimated

Denoiser = Callable[[np.ndarray, float], np.ndarray]


def identity(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """The noisy input itself, unclipped: the floor every method must beat."""
    return noisy.astype(np.float32)


def gaussian_blur(noisy: np.ndarray, sigma: float, blur_sigma: float = 1.0) -> np.ndarray:
    """Gaussian low-pass filter with std-dev blur_sigma pixels (ignores the noise level)."""
    blurred = cv2.GaussianBlur(noisy.astype(np.float32), (0, 0), sigmaX=blur_sigma)
    return np.clip(blurred, 0.0, 1.0)


def median(noisy: np.ndarray, sigma: float, size: int = 3) -> np.ndarray:
    """Per-channel median filter of size x size (3 or 5 for float images)."""
    return np.clip(cv2.medianBlur(noisy.astype(np.float32), size), 0.0, 1.0)


def non_local_means(noisy: np.ndarray, sigma: float, h_factor: float = 0.8) -> np.ndarray:
    """scikit-image non-local means told the noise level: h = h_factor * sigma."""
    from skimage.restoration import denoise_nl_means

    sigma_unit = sigma / 255.0
    if sigma_unit <= 0:
        return np.clip(noisy, 0.0, 1.0).astype(np.float32)
    denoised = denoise_nl_means(
        noisy.astype(np.float64),
        h=h_factor * sigma_unit,
        sigma=sigma_unit,
        patch_size=5,
        patch_distance=6,
        fast_mode=True,
        channel_axis=-1,
    )
    return np.clip(denoised, 0.0, 1.0).astype(np.float32)


def bm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """Colour BM3D (PyPI `bm3d`, CBM3D in opponent colour space) told the noise level."""
    import bm3d as bm3d_package

    if sigma <= 0:
        return np.clip(noisy, 0.0, 1.0).astype(np.float32)
    denoised = bm3d_package.bm3d_rgb(noisy.astype(np.float64), sigma / 255.0)
    return np.clip(denoised, 0.0, 1.0).astype(np.float32)


def bm4d_video(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """Colour BM4D (PyPI `bm4d`) on a whole clip, told the noise level: as CBM3D does for one
    image, the clip goes to opponent colour space, blocks are matched in its luminance across
    space and time, and each channel is filtered with its own scaled sigma.

    noisy: float32 (T, H, W, 3) RGB clip; returns float32 (T, H, W, 3) clipped to [0, 1].
    """
    import bm3d as bm3d_package
    import bm4d as bm4d_package

    sigma = told_or_estimated(noisy, sigma)
    if sigma <= 0:
        return np.clip(noisy, 0.0, 1.0).astype(np.float32)
    frames, height, width, _ = noisy.shape
    opponent, high, low, scale, _ = bm3d_package.rgb_to(
        noisy.reshape(frames * height, width, 3).astype(np.float64), "opp"
    )
    volume = opponent.reshape(frames, height, width, 3).transpose(3, 1, 2, 0)  # (C, H, W, T)
    sigmas = [sigma / 255.0 * float(np.sqrt(factor)) for factor in np.ravel(scale)]
    denoised = np.asarray(bm4d_package.bm4d_multichannel(volume, sigmas))
    # bm4d 4.2.5 leaves a few chroma pixels NaN on some clips (2 of 1.8 million values on a
    # 15 x 200 x 200 sample clip): they keep their noisy value, so one pixel cannot void a score.
    denoised = np.where(np.isfinite(denoised), denoised, volume)
    rgb, *_ = bm3d_package.rgb_to(
        denoised.transpose(3, 1, 2, 0).reshape(frames * height, width, 3), "opp", True, high, low
    )
    return np.clip(rgb.reshape(noisy.shape), 0.0, 1.0).astype(np.float32)


def baseline(name: str, config: Evaluate) -> Denoiser:
    """The named classical method with the settings from params.evaluate."""
    if name == "noisy":
        return identity
    if name == "blur":
        return lambda noisy, sigma: gaussian_blur(noisy, sigma, config.blur_sigma)
    if name == "median":
        return lambda noisy, sigma: median(noisy, sigma, config.median_size)
    if name == "nlm":
        return lambda noisy, sigma: non_local_means(noisy, sigma, config.nlm_h_factor)
    if name == "bm3d":
        return bm3d
    raise ValueError(f"unknown baseline {name!r}")


# Methods that see a whole clip at once (config.VIDEO_BASELINE_METHODS): the clip sets only.
VIDEO_METHODS: dict[str, BatchDenoiser] = {"bm4d": bm4d_video}


def image_baselines(names: list[str], config: Evaluate) -> dict[str, BatchDenoiser]:
    """The named image methods (others skipped), each applied image by image, in names' order."""
    return {name: per_image(baseline(name, config)) for name in names if name in BASELINE_METHODS}
