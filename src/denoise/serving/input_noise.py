"""What `denoise apply` says of each input's noise: Donoho's estimate (core.noise_level) of its
level, on an image or a video's first frame, against the noise range the model was trained on
(its card: the shipped model's card.json, a trained model's models/<name>.json beside its
.keras file, or a logged model's metadata)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from denoise.core.noise_level import NOISE_RANGE, estimate_sigma, trained_noise_range
from denoise.data.video import VIDEO_SUFFIXES, read_image_float, read_video_rgb
from denoise.models.pretrained import PRETRAINED_MODEL, pretrained_card


def input_noise_level(source: Path) -> float:
    """Donoho's estimate (0-255) of an image's noise level, or of a video's first frame (one
    frame keeps it cheap); NaN where the input gives none (fewer than 2 pixels a side)."""
    if source.suffix.lower() in VIDEO_SUFFIXES:
        image = next(iter(read_video_rgb(source)))  # the generator closes as it is dropped
    else:
        image, _ = read_image_float(source)
    colour = image[..., :3]  # alpha is no image content
    if min(colour.shape[:2]) < 2:
        return float("nan")
    return float(estimate_sigma(colour))


def _range(value: Any) -> tuple[float, float] | None:
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    return float(value[0]), float(value[1])


def model_noise_range(uri: str) -> tuple[float, float] | None:
    """The noise range (0-255) the model at uri was trained on, or None where its card has
    none: the shipped model's training noise, a .keras file's models/<name>.json, or an MLflow
    model's metadata (each read only, never loaded)."""
    path = Path(uri)
    if path.resolve() == PRETRAINED_MODEL.resolve():
        return trained_noise_range(pretrained_card().get("training_noise"))
    if path.suffix == ".keras":
        summary = path.with_suffix(".json")
        with contextlib.suppress(OSError, ValueError):
            return _range(json.loads(summary.read_text()).get(NOISE_RANGE))
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    try:
        metadata = Model.load(uri).metadata or {}
    except (MlflowException, OSError):
        return None
    return _range(metadata.get(NOISE_RANGE))


def noise_note(
    source: Path, sigma: float, trained: tuple[float, float] | None, tolerance: float
) -> str:
    """One line for stderr: the input's estimated noise level against the model's range, a
    warning when it lies outside by more than tolerance (0-255: the estimate's own error)."""
    if not np.isfinite(sigma):
        return f"{source}: noise level not measurable (image too small)"
    level = f"noise level {sigma:.1f} (Donoho's estimate, 0-255)"
    if trained is None:
        return f"{source}: {level}; the model's trained range: unknown"
    low, high = trained
    span = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    if low - tolerance <= sigma <= high + tolerance:
        return f"{source}: {level}, within the model's trained range {span}"
    side = "below" if sigma < low else "above"
    return f"warning: {source}: {level} is {side} the model's trained range {span}; " + (
        "it may blur detail it takes for noise" if side == "below" else "noise may remain"
    )
