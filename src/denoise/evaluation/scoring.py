"""A denoiser scored against the clean images: PSNR and SSIM per image (tPSNR per clip), ms per
frame, as docs/benchmarks.md states the conventions (core.metrics)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from denoise.core.metrics import psnr, ssim, temporal_psnr
from denoise.core.noise_level import estimate_sigma

# Maps noisy float32 (N, H, W, 3) images, and the sigma (0-255 scale) a method is told, to the
# denoised (N, H, W, 3); a clip method maps one (T, H, W, 3) clip the same way.
BatchDenoiser = Callable[[np.ndarray, float], np.ndarray]
IDENTITY = "noisy"  # the method that returns its input: no outputs are kept of it


@dataclasses.dataclass(frozen=True)
class MethodResult:
    psnr: list[float]
    ssim: list[float]
    ms_per_frame: float
    outputs: np.ndarray  # the first few denoised images, for triptychs

    def summary(self) -> dict[str, Any]:
        """Mean PSNR and SSIM, ms per frame and the number of images, as metrics.json holds
        a method's scores at one set and level."""
        return {
            "psnr": float(np.mean(self.psnr)),
            "ssim": float(np.mean(self.ssim)),
            "ms_per_frame": self.ms_per_frame,
            "images": len(self.psnr),
        }


def told_or_estimated(noisy: np.ndarray, sigma: float) -> float:
    """The sigma (0-255 scale) a method uses on noisy float32 (H, W, 3) or (T, H, W, 3): the
    one it was told, or where that is NaN (told_sigma: not told) Donoho's estimate made on the
    noisy image itself (core.noise_level; a clip's: the median of its frames')."""
    if not math.isnan(sigma):
        return sigma
    return float(np.median(estimate_sigma(noisy.reshape(-1, *noisy.shape[-3:]))))


def per_image(function: Callable[[np.ndarray, float], np.ndarray]) -> BatchDenoiser:
    """A one-image denoiser applied to each image of a stack in turn, told sigma or, where it
    is NaN, the image's own estimate (told_or_estimated)."""
    return lambda noisy, sigma: np.stack(
        [function(image, told_or_estimated(image, sigma)) for image in noisy]
    )


def score(
    clean: np.ndarray, noisy: np.ndarray, sigma: float, denoise_batch: BatchDenoiser, keep: int
) -> MethodResult:
    """Denoise a stack of images and score each against its clean original.

    clean, noisy: float32 (N, H, W, 3); sigma on the 0-255 scale (the level a method is told).
    """
    start = time.perf_counter()
    denoised = denoise_batch(noisy, sigma)
    seconds = time.perf_counter() - start
    return MethodResult(
        psnr=[psnr(reference, image) for reference, image in zip(clean, denoised, strict=True)],
        ssim=[ssim(reference, image) for reference, image in zip(clean, denoised, strict=True)],
        ms_per_frame=1000.0 * seconds / max(len(noisy), 1),
        outputs=denoised[:keep],
    )


def score_methods(
    clean: np.ndarray,
    noisy: np.ndarray,
    sigma: float,
    denoisers: Mapping[str, BatchDenoiser],
    counts: Mapping[str, int] | None = None,
    keep: int = 0,
) -> Iterator[tuple[str, MethodResult]]:
    """Every method on the same noisy stack, in turn: (method, its result) as each finishes.

    clean, noisy: float32 (N, H, W, 3); sigma on the 0-255 scale. counts: a method scored on
    its first counts[method] images only (0: skipped; absent: all). keep: outputs kept of each
    method but the noisy input.
    """
    for method, denoise_batch in denoisers.items():
        count = min(len(clean), (counts or {}).get(method, len(clean)))
        if count == 0:
            continue
        kept = keep if method != IDENTITY else 0
        yield method, score(clean[:count], noisy[:count], sigma, denoise_batch, keep=kept)


def psnr_scores(
    clean: np.ndarray, noisy: np.ndarray, sigma: float, denoise_batch: BatchDenoiser
) -> list[float]:
    """PSNR (dB) of each denoised image against its clean original, without SSIM or timing.

    clean: float32 (N, H, W, 3) in [0, 1]; noisy: what denoise_batch takes for those N images
    (a temporal model's windows); denoise_batch returns (N, H, W, 3), clipped to [0, 1].
    """
    denoised = denoise_batch(noisy, sigma)
    return [psnr(reference, image) for reference, image in zip(clean, denoised, strict=True)]


ESTIMATED_KINDS = ("camera", "compressed")  # a method is told no sigma: it estimates it


def told_sigma(level_info: dict[str, Any]) -> float:
    """The noise level a method is told at an evaluation level (index.json's entry): the
    declared sigma of a Gaussian level; NaN for camera and compressed levels, where each
    method estimates it from the noisy image as a user would (told_or_estimated); else the
    set's measured one."""
    if level_info["kind"] == "gaussian":
        return float(level_info["level"])
    if level_info["kind"] in ESTIMATED_KINDS:
        return math.nan
    return float(level_info["empirical_sigma"])


def score_clips(
    clean: np.ndarray, noisy: np.ndarray, sigma: float, denoise_clip: BatchDenoiser
) -> tuple[dict[str, float], np.ndarray]:
    """Denoise each clip whole and score it: PSNR and SSIM per frame, tPSNR per clip, each
    then averaged; ms per frame. Returns the scores and the first clip denoised.

    clean, noisy: float32 (N, T, H, W, 3) clips; denoise_clip maps one (T, H, W, 3) clip (a
    frame method sees its frames as a stack of images).
    """
    frame_psnr, frame_ssim, clip_tpsnr = [], [], []
    outputs: list[np.ndarray] = []
    seconds = 0.0
    for reference, corrupted in zip(clean, noisy, strict=True):
        start = time.perf_counter()
        denoised = denoise_clip(corrupted, sigma)
        seconds += time.perf_counter() - start
        frame_psnr += [psnr(frame, out) for frame, out in zip(reference, denoised, strict=True)]
        frame_ssim += [ssim(frame, out) for frame, out in zip(reference, denoised, strict=True)]
        clip_tpsnr.append(temporal_psnr(reference, denoised))
        if not outputs:
            outputs.append(denoised)
    scores = {
        "psnr": float(np.mean(frame_psnr)),
        "ssim": float(np.mean(frame_ssim)),
        "tpsnr": float(np.mean(clip_tpsnr)),
        "ms_per_frame": 1000.0 * seconds / max(len(frame_psnr), 1),
        "clips": len(clean),
    }
    return scores, outputs[0]
