"""The Python API: `from denoise import Denoiser`.

    denoiser = Denoiser.load("champion")          # or "pretrained", a .keras file, models:/...
    clean = denoiser.denoise(image)               # (H, W, C) or (N, H, W, C), same dtype back
    denoiser.denoise_video("in.mp4", "out.mp4")   # frame rate, timestamps and audio kept

It is what `denoise apply` runs: the same loading, backend, tiling and writing. Importing it
loads neither TensorFlow nor MLflow; a .keras file or "pretrained" loads Keras only (OpenVINO
only, once its converted copy is kept: serving.backends), and MLflow comes only for "champion"
or a models:/ or runs:/ URI.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import numpy as np

from denoise.core import runtime
from denoise.core.config import Apply, Params, default_params, load_params
from denoise.core.errors import DenoiseError, InputError, ModelError
from denoise.core.schema import INIT_CHAMPION, INIT_PRETRAINED
from denoise.models.pretrained import pretrained_model_path
from denoise.serving.apply import Applied, apply_to_video, denoise_channels, model_window
from denoise.serving.backends import describe
from denoise.serving.choose import load_model_at, shipped_fallback
from denoise.serving.load import default_model_uri

# Integer images are scaled from their full range, as image files are read.
INTEGER_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
FLOAT_TYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


@dataclasses.dataclass
class Denoiser:
    """A loaded denoising model and the tiling it runs with (params.yaml's `apply`)."""

    model: Any
    source: str  # what was loaded: a file, or a models:/ or runs:/ URI
    settings: Apply
    backend: str = ""  # what runs the model (serving.backends.describe): "OpenVINO, bfloat16"

    @classmethod
    def load(
        cls,
        model: str | Path = INIT_CHAMPION,
        params: str | Path | Params | None = None,
        backend: str | None = None,
    ) -> Denoiser:
        """Load "champion" (the registered image champion, or the shipped model with a one-line
        note while none is registered), "pretrained" (the shipped model), a .keras file, an
        MLflow model folder, or a models:/ or runs:/ URI.

        params: a params.yaml, or Params (default: ./params.yaml where there is one, else the
        packaged defaults): its `apply` settings, and the tracking store "champion" is read from.
        backend: "keras", "openvino" or "auto" (default: params' apply.backend).
        """
        runtime.configure()  # TensorFlow's options, before Keras loads
        config = _params(params)
        if backend is not None:
            try:
                settings = dataclasses.replace(config.apply, backend=cast(Any, backend))
            except DenoiseError as error:
                raise ModelError(f"backend {backend!r}: {error}") from None
            config = dataclasses.replace(config, apply=settings)
        name = str(model)
        if name == INIT_CHAMPION:
            loaded, uri = shipped_fallback(config, [default_model_uri(config)])
        else:
            uri = str(pretrained_model_path()) if name == INIT_PRETRAINED else name
            if ":/" not in uri and not Path(uri).exists():
                raise ModelError(
                    f"{name}: no such model: give 'champion', 'pretrained', a .keras file, an "
                    "MLflow model folder, or a models:/ or runs:/ URI"
                )
            loaded = load_model_at(config, uri)
        return cls(loaded, uri, config.apply, describe(loaded))

    @property
    def window(self) -> int:
        """Frames the model takes per output frame (1: an image model)."""
        return model_window(self.model)

    def denoise(self, images: np.ndarray) -> np.ndarray:
        """Denoise one image (H, W, C) or a batch (N, H, W, C); C is 1 (grey), 3 (RGB) or 4
        (RGBA, alpha copied). uint8 and uint16 are scaled from their full range, floats must
        lie in [0, 1]. Returns the same shape and dtype."""
        if self.window > 1:
            raise InputError(
                f"{self.source} is a temporal model of {self.window} frames: use denoise_video"
            )
        batch = _checked(images)
        dtype = np.asarray(images).dtype
        scale = INTEGER_SCALES.get(dtype, 1.0)
        results = [
            denoise_channels(self.model, (image / scale).astype(np.float32), self.settings)
            for image in batch
        ]
        stacked = np.stack(results)
        if dtype in INTEGER_SCALES:
            stacked = np.round(np.clip(stacked, 0.0, 1.0) * scale)
        out = stacked.astype(dtype)
        return out if np.ndim(images) == 4 else out[0]

    def denoise_video(self, source: str | Path, target: str | Path) -> Applied:
        """Denoise every frame of a video into target (written atomically): the source's size,
        frame count and timing, and its audio where PyAV is installed (denoise apply's way)."""
        source, target = Path(source), Path(target)
        if not source.is_file():
            raise InputError(f"{source}: no such video")
        return apply_to_video(self.model, source, target, self.settings)


def _params(params: str | Path | Params | None) -> Params:
    if isinstance(params, Params):
        return params
    if params is None:
        return load_params("params.yaml") if Path("params.yaml").is_file() else default_params()
    return load_params(params)


def _checked(images: np.ndarray) -> np.ndarray:
    """images as a batch (N, H, W, C), or InputError in one line naming what is wrong."""
    if not isinstance(images, np.ndarray):
        raise InputError(f"expected a numpy array, got {type(images).__name__}")
    if images.dtype not in INTEGER_SCALES and images.dtype not in FLOAT_TYPES:
        raise InputError(
            f"dtype {images.dtype} is not an image type: give uint8, uint16, or floats in [0, 1]"
        )
    if images.ndim not in (3, 4):
        raise InputError(f"shape {images.shape}: give one image (H, W, C) or a batch (N, H, W, C)")
    if images.shape[-1] not in (1, 3, 4):
        raise InputError(
            f"shape {images.shape}: {images.shape[-1]} channels; give 1 (grey), 3 (RGB) or 4 (RGBA)"
        )
    if images.dtype in FLOAT_TYPES:
        if not np.isfinite(images).all():
            raise InputError("the image holds NaN or infinite values")
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            raise InputError(
                f"float values must lie in [0, 1], these span [{low:.3g}, {high:.3g}]: "
                "divide 8-bit values by 255, or pass the uint8 array"
            )
    return images if images.ndim == 4 else images[None]
