"""Scoring without a clean reference: the held-out frame-to-frame loss on the noisy sources.

A denoised frame t is compared with frame t + 1 warped onto it (data.flow), over the pixels its
mask keeps. Where the noise is independent from frame to frame, that loss is the error against
the clean frame plus the noise's variance (the Noise2Noise argument), so it ranks models as
PSNR would. It is reported in dB, -10 log10(loss), so that higher is better, as PSNR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from denoise.core.config import Params

Denoise = Callable[[np.ndarray], np.ndarray]  # float32 (N, H, W, 3) in [0, 1] -> the same


def held_out_pairs(
    params: Params, split: str = "test", print_fn: Callable[[str], None] = print
) -> tuple[np.ndarray, np.ndarray] | None:
    """The noisy sources' held-out frame-to-frame pairs: from the clips of `split` of each
    source whose role is noisy (the manifest's role column), as training validates on its
    validation clips (training.stream.frame_to_frame_validation). None when the run has no noisy
    source; None with a note when they have no clip of that split (still images, or
    extract.clips off) or none keeps enough pixels."""
    from denoise.data.clips import CLIPS_MANIFEST
    from denoise.data.extract import load_manifest
    from denoise.training.stream import frame_to_frame_validation, noisy_sources

    frames_dir = Path(params.paths.frames)
    noisy = noisy_sources(load_manifest(frames_dir))
    if not noisy:
        return None
    pairs = None
    if (frames_dir / CLIPS_MANIFEST).is_file():
        clips = pd.read_parquet(frames_dir / CLIPS_MANIFEST)
        chosen = clips[(clips["split"] == split) & clips["video"].isin(noisy)]
        pairs = frame_to_frame_validation(frames_dir, chosen, params.train.without_clean)
    if pairs is None:
        print_fn(
            f"no held-out frame-to-frame pairs in the {split} clips of the noisy sources "
            f"({', '.join(sorted(noisy))}); models are decided on PSNR on the clean score set"
        )
    return pairs


def frame_to_frame_db(denoised: np.ndarray, packed: np.ndarray) -> float:
    """-10 log10 of the masked squared error of denoised frames against their warped
    neighbours (dB; higher is better). denoised: float32 (N, H, W, 3) in [0, 1]; packed:
    float32 (N, H, W, 4), the warped neighbour then the mask (0 or 1). NaN when the masks keep
    no pixel (no score, so no promotion); infinite for an exact match."""
    from denoise.training.supervision import held_out_loss  # what training validates with

    if not packed[..., 3].any():
        return math.nan
    loss = held_out_loss(denoised, packed)
    return math.inf if loss == 0.0 else -10.0 * math.log10(loss)


def score_frame_to_frame(
    denoise: Denoise, noisy: np.ndarray, packed: np.ndarray, batch_size: int
) -> float:
    """frame_to_frame_db of `denoise` on held-out pairs, denoised batch_size frames at a time.

    noisy: float32 (N, H, W, 3) in [0, 1]; packed: (N, H, W, 4), as held_out_pairs gives them.
    """
    denoised = np.concatenate(
        [
            np.clip(denoise(noisy[start : start + batch_size]), 0.0, 1.0)
            for start in range(0, len(noisy), batch_size)
        ]
    )
    return frame_to_frame_db(denoised, packed)
