"""params.yaml's noise section: training noise, the camera processing, the evaluation levels.

Frozen pydantic dataclasses (denoise.core.schema's `section`), read through
denoise.core.config.load_params like every section.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from denoise.core.schema import (
    AtLeast1,
    Float,
    Fraction,
    Int,
    Name,
    NonNegative,
    Positive,
    fail,
    section,
)
from denoise.core.train_config import TrainNoise


@section
class CameraProcessing:
    """The processing camera noise is added under (Brooks et al. 2019): unprocess an sRGB frame
    (inverse smoothstep, gamma expansion, divide by the gains), add the noise in linear light,
    process it again. Fixed at the means of the paper's random gains."""

    rgb_gain: Positive  # brightening (the paper: 1 / N(0.8, 0.1))
    red_gain: Positive  # white balance (the paper: U(1.9, 2.4))
    blue_gain: Positive  # (the paper: U(1.5, 1.9))
    gamma: Positive

    def gains(self) -> list[float]:
        """Per-channel gains, R G B: brightening times white balance."""
        return [self.rgb_gain * self.red_gain, self.rgb_gain, self.rgb_gain * self.blue_gain]


@section
class CameraLevel:
    """Poisson-Gaussian noise in linear light: variance shot * x + read, x in [0, 1]."""

    shot: Positive
    read: NonNegative


@section
class CompressedLevel:
    """An evaluation level's noisy images, JPEG-coded through OpenCV: <noise>-jpeg<quality>."""

    noise: Name  # the level it compresses: camera-high, gaussian-25, ...
    quality: Annotated[Int, Field(ge=1, le=100)]

    def name(self) -> str:
        return f"{self.noise}-jpeg{self.quality}"


@section
class EvaluationNoise:
    gaussian: list[NonNegative]
    poisson: list[Positive]
    speckle: list[NonNegative]
    salt_pepper: list[Fraction]
    camera: dict[Name, CameraLevel]  # camera-<name>
    compressed: list[CompressedLevel]
    as_saved: list[Float]

    @model_validator(mode="after")
    def _saved_levels(self) -> EvaluationNoise:
        for index, sigma in enumerate(self.as_saved):
            if sigma not in self.gaussian:
                fail(f"as_saved[{index}]", f"{sigma:g} is not one of gaussian {self.gaussian}")
        known = [f"{kind}-{level:g}" for kind, level in self.levels()]
        known += [f"camera-{name}" for name in self.camera]
        for index, level in enumerate(self.compressed):
            if level.noise not in known:
                fail(f"compressed[{index}].noise", f"{level.noise!r} is none of {known}")
        return self

    def levels(self) -> list[tuple[str, float]]:
        """Every (kind, level) pair, in a fixed order."""
        return [
            (kind, float(level))
            for kind in ("gaussian", "poisson", "speckle", "salt_pepper")
            for level in getattr(self, kind)
        ]


@section
class HeldOut:
    """The held-out photo set: photographs no training set may use, up to `crops` tiles each."""

    images: list[Name]  # scikit-image photographs, or grace_hopper (matplotlib's sample data)
    crops: Annotated[Int, Field(ge=0)]  # tiles of photograph_size kept per image; 0: no set


@section
class Noise:
    train: TrainNoise
    camera: CameraProcessing
    evaluation: EvaluationNoise
    validation_sigma: NonNegative
    max_frames: AtLeast1
    max_clips: AtLeast1 | None  # clips per clip set, evenly spaced over it (None: all)
    photographs: list[Name]
    photograph_size: Annotated[Int, Field(ge=8)]
    held_out: HeldOut

    @model_validator(mode="after")
    def _validation_level(self) -> Noise:
        if self.validation_sigma not in self.evaluation.gaussian:
            fail(
                "validation_sigma",
                f"{self.validation_sigma} is not one of evaluation.gaussian "
                f"{self.evaluation.gaussian}",
            )
        return self
