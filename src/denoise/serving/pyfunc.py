"""The MLflow pyfunc flavour of a denoiser: a saved .keras model behind tiled inference.

`mlflow.pyfunc.load_model(uri).predict(images)` and `mlflow models serve` both denoise images
of any size: float32 (N, H, W, 3) RGB in [0, 1] in, the same shape out. A temporal model
(fastdvdnet) takes windows of consecutive frames, (N, T, H, W, 3), and returns each window's
middle frame denoised, (N, H, W, 3).
denoise.tracking.models logs it; this module holds only the class, so MLflow can unpickle it
by name.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel

from denoise.core.config import default_params
from denoise.core.temporal import as_channels
from denoise.serving.tiling import denoise_batch, denoise_image

KERAS_ARTIFACT = "keras_model"  # key in context.artifacts: the .keras file
BACKEND_KEY = "keras_backend"  # in model_config and the MLmodel metadata: what trained it


class DenoiserModel(PythonModel):
    """Denoise images of any size with a Keras model: padding and blended overlapping tiles.

    Needs the artifact KERAS_ARTIFACT; model_config may set tile_size, overlap, batch_size,
    self_ensemble and precision (log_denoiser writes them from params.apply, and BACKEND_KEY;
    `mlflow.pyfunc.load_model(uri, model_config=...)` overrides the keys the model was logged
    with, serve_as the last two whatever it was logged with).
    """

    model: Any = None

    def load_context(self, context: Any) -> None:
        # lazy: TensorFlow's options must be set before Keras loads it in a serving process
        from denoise.core import runtime

        runtime.configure()
        # A model logged without some apply key (an older version): the shipped params'.
        defaults = dataclasses.asdict(default_params().apply)
        config = {**defaults, **(context.model_config or {})}
        # The backend it was trained on where this environment has it, else one it has.
        trained_on = config.get(BACKEND_KEY)
        chosen = runtime.choose_keras_backend(trained_on)
        if chosen is not None and chosen != trained_on:
            print(
                f"denoise: serving on Keras backend {chosen} (trained on {trained_on}, "
                "which this environment lacks)",
                file=sys.stderr,
            )
        from denoise.models.build import load_model

        self.model = load_model(context.artifacts[KERAS_ARTIFACT])
        self.tile_size = int(config["tile_size"])
        self.overlap = int(config["overlap"])
        self.batch_size = int(config["batch_size"])
        self.serve_as(bool(config["self_ensemble"]), str(config["precision"]))

    def serve_as(self, self_ensemble: bool, precision: str) -> None:
        """Serve with or without the x8 self-ensemble, computing in precision
        (config.APPLY_PRECISIONS). MLflow drops a load-time override whose key the model was not
        logged with (versions from before an option existed); this sets them all the same."""
        from denoise.models.precision import at_precision  # lazy: Keras, as in load_context

        self.ensemble = self_ensemble
        self.model = at_precision(self.model, precision)

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Denoise float32 RGB in [0, 1]: (N, H, W, 3) or one (H, W, 3) -> the same shape; a
        temporal model: windows (N, T, H, W, 3) of T consecutive frames -> their middle frames
        (N, H, W, 3), or one window (T, H, W, 3) -> (H, W, 3).

        Integer images are scaled from their dtype's range; a 1-D object array of images (or
        windows) of different sizes (a ragged batch) returns an object array of denoised images.
        """
        if isinstance(model_input, np.ndarray) and model_input.dtype == object:
            denoised = np.empty(len(model_input), dtype=object)
            for index, image in enumerate(model_input):
                denoised[index] = self._denoise(_as_float(np.asarray(image)))
            return denoised
        return self._denoise(_as_float(np.asarray(model_input)))

    @property
    def window(self) -> int:
        """Frames per output frame: above 1 for a temporal model (its input channels / 3)."""
        return int(self.model.input_shape[-1]) // 3

    def _denoise(self, noisy: np.ndarray) -> np.ndarray:
        tiling = (self.tile_size, self.overlap, self.batch_size)
        if self.window > 1:
            if noisy.ndim == 4 and noisy.shape[0] == self.window:  # one window
                return self._denoise(noisy[None])[0]
            if noisy.ndim != 5 or noisy.shape[1] != self.window or noisy.shape[-1] != 3:
                raise ValueError(
                    f"a temporal model of {self.window} frames takes windows "
                    f"(N, {self.window}, H, W, 3), got shape {noisy.shape}"
                )
            windows = np.stack([as_channels(window) for window in noisy])
            return denoise_batch(self.model, windows, *tiling, ensemble=self.ensemble)
        if noisy.ndim == 3:
            return denoise_image(self.model, noisy, *tiling, ensemble=self.ensemble)
        if noisy.ndim == 4:
            return denoise_batch(self.model, noisy, *tiling, ensemble=self.ensemble)
        raise ValueError(f"expected images (N, H, W, 3) or (H, W, 3), got shape {noisy.shape}")


def _as_float(images: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]; integer images scaled from their dtype's full range."""
    if np.issubdtype(images.dtype, np.integer):
        return images.astype(np.float32) / float(np.iinfo(images.dtype).max)
    return images.astype(np.float32, copy=False)
