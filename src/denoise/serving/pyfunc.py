"""The MLflow pyfunc flavour of a denoiser: a saved .keras model behind tiled inference.

`mlflow.pyfunc.load_model(uri).predict(images)` and `mlflow models serve` both denoise images
of any size: float32 (N, H, W, 3) RGB in [0, 1] in, the same shape out. A temporal model
(fastdvdnet) takes windows of consecutive frames, (N, T, H, W, 3), and returns each window's
middle frame denoised, (N, H, W, 3). What the served model refuses is in denoise.serving.guard.
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
from denoise.serving import guard
from denoise.serving.tiling import denoise_batch, denoise_image

KERAS_ARTIFACT = "keras_model"  # key in context.artifacts: the .keras file
BACKEND_KEY = "keras_backend"  # in model_config and the MLmodel metadata: what trained it


class DenoiserModel(PythonModel):
    """Denoise images of any size with a Keras model: padding and blended overlapping tiles.

    Needs the artifact KERAS_ARTIFACT; model_config may set tile_size, overlap, batch_size,
    self_ensemble and precision, and the served model's limits max_request_megabytes,
    max_megapixels and value_margin (log_denoiser writes them from params.apply, and BACKEND_KEY;
    `mlflow.pyfunc.load_model(uri, model_config=...)`, or SERVING_MODEL_CONFIG for `mlflow
    models serve`, overrides the keys the model was logged with, serve_as self_ensemble and
    precision whatever it was logged with).
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
        guard.install(guard.Limits.from_config(config))  # in MLflow's scoring server only

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

        Integer and boolean images, NaN and infinities are refused (guard.Refused, a
        ValueError); values outside [0, 1] are taken as they are (unclipped noise), except by
        the served model, which refuses those beyond apply.value_margin and images over
        apply.max_megapixels, and stops at its timeout (guard). A 1-D object array of images
        (or windows) of different sizes (a ragged batch) returns an object array of denoised
        images.
        """
        served = guard.current()  # None outside MLflow's scoring server
        if isinstance(model_input, np.ndarray) and model_input.dtype == object:
            images = [self._checked(np.asarray(image), served) for image in model_input]
            denoised = np.empty(len(images), dtype=object)
            for index, image in enumerate(images):
                denoised[index] = self._denoise(image, served)
            return denoised
        return self._denoise(self._checked(np.asarray(model_input), served), served)

    def _checked(self, images: np.ndarray, served: guard.Served | None) -> np.ndarray:
        """images as float32, once they are found fit to denoise (guard.Refused if not)."""
        if not np.issubdtype(images.dtype, np.floating):
            raise guard.Refused(
                400,
                f"expected float32 RGB values in [0, 1], got {images.dtype}: divide 8-bit "
                "images by 255 and 16-bit ones by 65535",
            )
        images = images.astype(np.float32, copy=False)
        guard.check_finite(images)
        if served is not None:
            served.check_images(images)
            served.check_time()
        return images

    @property
    def window(self) -> int:
        """Frames per output frame: above 1 for a temporal model (its input channels / 3)."""
        return int(self.model.input_shape[-1]) // 3

    def _denoise(self, noisy: np.ndarray, served: guard.Served | None = None) -> np.ndarray:
        tiling = (self.tile_size, self.overlap, self.batch_size)
        options: dict[str, Any] = {"ensemble": self.ensemble}
        if served is not None:
            options["before_call"] = served.check_time
        if self.window > 1:
            if noisy.ndim == 4 and noisy.shape[0] == self.window:  # one window
                return self._denoise(noisy[None], served)[0]
            if noisy.ndim != 5 or noisy.shape[1] != self.window or noisy.shape[-1] != 3:
                raise ValueError(
                    f"a temporal model of {self.window} frames takes windows "
                    f"(N, {self.window}, H, W, 3), got shape {noisy.shape}"
                )
            windows = np.stack([as_channels(window) for window in noisy])
            return denoise_batch(self.model, windows, *tiling, **options)
        if noisy.ndim == 3:
            return denoise_image(self.model, noisy, *tiling, **options)
        if noisy.ndim == 4:
            return denoise_batch(self.model, noisy, *tiling, **options)
        raise ValueError(f"expected images (N, H, W, 3) or (H, W, 3), got shape {noisy.shape}")
