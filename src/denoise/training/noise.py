"""Training noise drawn inside the compiled training step.

The train stage's input stream yields clean patches only; `TrainingNoise`, the first layer of
the model being fitted, adds the model's training noise (params.noise.train or its variant's)
with Keras's counter-based random ops. Drawing on the CPU in NumPy cost more than building the
batch itself (bench/throughput.py), and on a GPU host it would leave the accelerator waiting.

The noise models are those of `denoise.core.noise` (which makes the fixed evaluation sets in NumPy),
with the same parameters: every function takes clean float32 RGB in [0, 1] and returns it
noisy and unclipped, or clipped and rounded to 8 bits when `as_saved`.
`compressed` noise (camera noise, then JPEG) cannot be drawn in the step: the patch stream
draws it on the host (`host_noise`) and the layer passes it through.
The layer is the identity outside training, so validation and prediction see their inputs
as they are. Its random state is part of the checkpoint, so a resumed run draws the noise
the uninterrupted run would have drawn.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from denoise.core.data_config import CameraProcessing
from denoise.core.errors import ConfigError
from denoise.core.noise import add_camera_noise, compress_jpeg
from denoise.core.temporal import REFLECTED_FRAME
from denoise.core.train_config import TrainNoise


def _poisson(lam: Any, seed: Any) -> Any:
    """Poisson counts of rate `lam` (float32), from the backend's own sampler: keras.random has
    none."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_poisson(ops.shape(lam), seed, lam, dtype="float32")
    if backend == "jax":
        import jax

        return jax.random.poisson(seed, lam, ops.shape(lam)).astype("float32")
    raise ConfigError(f"poisson training noise needs the tensorflow or jax backend, not {backend}")


def mirror_reflected(clean: Any, noisy: Any) -> Any:
    """noisy (B, H, W, 3 * frames) with every frame that is REFLECTED_FRAME in clean replaced
    by the noisy frame it mirrors. A window's reflected frames lie at its ends, before its first
    real frame or after its last, and position p mirrors 2 * first - p or 2 * last - p."""
    frames = clean.shape[-1] // 3
    if len(clean.shape) != 4 or frames == 1:  # not a window of frames
        return noisy
    batch = ops.shape(clean)[0]
    real = ops.cast(
        ops.reshape(clean, (batch, -1, frames, 3))[:, 0, :, 0] != REFLECTED_FRAME, "int32"
    )
    first = ops.argmax(real, axis=1)[:, None]  # (B, 1): argmax gives the first maximum
    last = frames - 1 - ops.argmax(ops.flip(real, axis=1), axis=1)[:, None]
    position = ops.arange(frames)[None, :]
    source = ops.where(position < first, 2 * first - position, position)
    source = ops.where(position > last, 2 * last - position, source)
    pick = ops.one_hot(source, frames, dtype=noisy.dtype)  # (B, frame out, frame in)
    mirrored = ops.einsum("bpic,boi->bpoc", ops.reshape(noisy, (batch, -1, frames, 3)), pick)
    return ops.reshape(mirrored, ops.shape(noisy))


@keras.saving.register_keras_serializable(package="denoise")
class TrainingNoise(keras.layers.Layer):
    """Adds a TrainNoise to clean float32 (B, H, W, 3 * frames) batches when training=True:
    one image, or a temporal model's window of frames stacked on the channel axis.

    Every frame of a window gets noise of its own (independent draws), at the same level:
    gaussian_blind draws one sigma per image or window from U(sigma_min, sigma_max), as the
    network must serve every level in that range. A frame the window holds by reflection
    (core.temporal.REFLECTED_FRAME, training.stream.ClipStream) gets the noisy frame it
    mirrors, noise and all, as a reflected noisy clip gives it at inference.
    """

    def __init__(
        self,
        noise: dict[str, Any] | TrainNoise,
        seed: int,
        camera: dict[str, Any] | CameraProcessing | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")  # noise on 8-bit data needs float32, not bf16
        super().__init__(**kwargs)
        self.noise = noise if isinstance(noise, TrainNoise) else TrainNoise(**noise)
        if isinstance(camera, dict):
            camera = CameraProcessing(**camera)
        if self.noise.kind == "camera" and camera is None:
            raise ConfigError("camera training noise needs noise.camera's processing")
        self.camera = camera
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _camera(self, clean: Any) -> Any:
        """Brooks et al.'s unprocess, Poisson-Gaussian noise in linear light at a (shot, read)
        drawn per image or window, process: core.noise.add_camera_noise in keras.ops."""
        noise, camera, shape = self.noise, self.camera, ops.shape(clean)
        if camera is None:
            raise ConfigError("camera training noise needs noise.camera's processing")
        gains = ops.tile(ops.convert_to_tensor(camera.gains(), "float32"), [shape[-1] // 3])
        one_per_image = (shape[0], 1, 1, 1)
        bounds = math.log(noise.shot_min), math.log(noise.shot_max)
        log_shot = keras.random.uniform(one_per_image, *bounds, seed=self.seed_generator)
        log_read = noise.read_slope * log_shot + noise.read_intercept
        log_read += keras.random.normal(
            one_per_image, stddev=noise.read_spread, seed=self.seed_generator
        )
        shot, read = ops.exp(log_shot), ops.exp(log_read)
        tone = 0.5 - ops.sin(ops.arcsin(1.0 - 2.0 * ops.clip(clean, 0.0, 1.0)) / 3.0)
        linear = ops.power(ops.maximum(tone, 1e-8), camera.gamma) / gains
        counted = _poisson(linear / shot, self.seed_generator.next()) * shot
        read_noise = ops.sqrt(read) * keras.random.normal(shape, seed=self.seed_generator)
        lifted = ops.clip((counted + read_noise) * gains, 0.0, 1.0)
        compressed = ops.power(ops.maximum(lifted, 1e-8), 1.0 / camera.gamma)
        return 3.0 * compressed**2 - 2.0 * compressed**3

    def call(self, clean: Any, training: bool = False) -> Any:
        if not training:
            return clean
        noise, shape = self.noise, ops.shape(clean)
        if noise.kind == "gaussian":
            noisy = clean + keras.random.normal(
                shape, stddev=noise.sigma / 255.0, seed=self.seed_generator
            )
        elif noise.kind == "gaussian_blind":
            sigma = keras.random.uniform(
                (shape[0], 1, 1, 1),  # one level per image or window
                noise.sigma_min / 255.0,
                noise.sigma_max / 255.0,
                seed=self.seed_generator,
            )
            noisy = clean + sigma * keras.random.normal(shape, seed=self.seed_generator)
        elif noise.kind == "speckle":
            spread = noise.variance**0.5
            noisy = clean * (
                1.0 + keras.random.normal(shape, stddev=spread, seed=self.seed_generator)
            )
        elif noise.kind == "salt_pepper":
            # all channels of a frame's pixel alike; each frame of a window its own pixels
            pixels = (shape[0], shape[1], shape[2], shape[3] // 3)
            hit = keras.random.uniform(pixels, seed=self.seed_generator) < noise.amount
            salt = keras.random.uniform(pixels, seed=self.seed_generator) < 0.5
            hit, salt = ops.repeat(hit, 3, axis=-1), ops.repeat(salt, 3, axis=-1)
            noisy = ops.where(hit, ops.cast(salt, clean.dtype), clean)
        elif noise.kind == "camera":
            noisy = self._camera(clean)
        elif noise.kind == "compressed":  # drawn on the host (host_noise): its input is noisy
            noisy = clean
        else:  # poisson: photon counts ~ Poisson(clean * peak), scaled back by 1 / peak
            lam = ops.maximum(clean, 0.0) * noise.peak
            noisy = _poisson(lam, self.seed_generator.next()) / noise.peak
        if noise.as_saved:
            noisy = ops.round(ops.clip(noisy, 0.0, 1.0) * 255.0) / 255.0
        return mirror_reflected(clean, noisy)

    def get_config(self) -> dict[str, Any]:
        camera = dataclasses.asdict(self.camera) if self.camera is not None else None
        noise = dataclasses.asdict(self.noise)
        return {**super().get_config(), "noise": noise, "seed": self.seed, "camera": camera}

    # The random state is not a weight, so Keras would not save it; a checkpoint needs it.
    def save_own_variables(self, store: Any) -> None:
        store["seed_state"] = ops.convert_to_numpy(self.seed_generator.state.value)

    def load_own_variables(self, store: Any) -> None:
        self.seed_generator.state.assign(store["seed_state"])


HostNoise = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def host_noise(noise: TrainNoise, camera: CameraProcessing) -> HostNoise | None:
    """The noise the patch stream draws on the host, for a kind the compiled step cannot draw
    (JPEG is no keras.ops): compressed, camera noise at a (shot, read) drawn per patch as the
    step draws it for `camera`, then OpenCV's JPEG at noise.jpeg_quality. None for every other
    kind. The function maps clean float32 (B, P, P, 3) patches and the batch's seeded rng to
    noisy ones; TrainingNoise then passes them through."""
    if noise.kind != "compressed":
        return None

    def add(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        bounds = math.log(noise.shot_min), math.log(noise.shot_max)
        log_shot = rng.uniform(*bounds, len(clean))
        log_read = noise.read_slope * log_shot + noise.read_intercept
        log_read = log_read + rng.normal(0.0, noise.read_spread, len(clean))
        noisy = [
            add_camera_noise(patch[None], shot, read, camera.gains(), camera.gamma, rng)[0]
            for patch, shot, read in zip(clean, np.exp(log_shot), np.exp(log_read), strict=True)
        ]
        return compress_jpeg(np.stack(noisy), noise.jpeg_quality)

    return add


def with_training_noise(
    model: keras.Model, noise: TrainNoise, seed: int, camera: CameraProcessing | None = None
) -> keras.Model:
    """The model to fit: clean patches in, TrainingNoise, then `model`; see `denoiser`.
    camera: noise.camera, the processing camera noise is added under."""
    return keras.Sequential(
        [keras.Input(model.input_shape[1:]), TrainingNoise(noise, seed, camera), model],
        name=f"{model.name}_training",
    )


def denoiser(training_model: keras.Model) -> keras.Model:
    """The network inside a fitted model (with_training_noise's, or training.supervision's):
    its one layer that is a model (its weights are shared, not copied)."""
    networks = [layer for layer in training_model.layers if isinstance(layer, keras.Model)]
    if len(networks) != 1:
        raise ValueError(f"{training_model.name}: holds {len(networks)} networks, not one")
    return networks[0]
