"""The data sections of params.yaml: samples (and dead leaves), extract (split, clips, each
source's role and the noise estimate that decides `auto`) and noise (training noise, the camera
processing, the evaluation levels): frozen pydantic dataclasses, as denoise.core.config
describes them."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from denoise.core.schema import (
    AtLeast1,
    Bool,
    Float,
    Fraction,
    Int,
    Name,
    NonNegative,
    PhotoFolder,
    Positive,
    Role,
    Source,
    StillFolder,
    fail,
    section,
)
from denoise.core.train_config import TrainNoise


@section
class DeadLeaves:
    """The dead_leaves still folder: seeded dead-leaves images (denoise.data.dead_leaves)."""

    images: AtLeast1
    radius_min: Annotated[Float, Field(ge=0.5)]  # pixels of the written image
    radius_max: Positive
    alpha: Annotated[Float, Field(gt=1)]  # disc radius density ~ r ** -alpha
    max_discs: AtLeast1  # at most this many discs an image (the last gaps keep the background)
    supersample: AtLeast1  # drawn this many times larger, then area-resized (soft edges)
    colours_from: Annotated[list[PhotoFolder], Field(min_length=1)]
    texture_fraction: Fraction  # share of discs given a grating between two colours
    texture_period_min: Annotated[Float, Field(ge=2)]  # pixels
    texture_period_max: Annotated[Float, Field(ge=2)]
    blur_max: NonNegative  # each image blurred by a Gaussian of sigma ~ U(0, blur_max) pixels

    @model_validator(mode="after")
    def _ranges(self) -> DeadLeaves:
        if self.radius_max <= self.radius_min:
            fail("radius_max", f"must be > radius_min, got {self.radius_max}")
        if self.texture_period_max < self.texture_period_min:
            fail("texture_period_max", "must be >= texture_period_min")
        return self


@section
class Samples:
    videos: list[Source]
    synthetic_frames: AtLeast1
    # Train-only still folders to build under paths.raw (denoise.data.stills): photos,
    # wallpapers, jxl_photos, dead_leaves.
    stills: list[StillFolder]
    dead_leaves: DeadLeaves


@section
class Split:
    validation_fraction: Annotated[Float, Field(ge=0, lt=1)]
    test_fraction: Annotated[Float, Field(ge=0, lt=1)]
    gap_seconds: NonNegative

    @model_validator(mode="after")
    def _fractions(self) -> Split:
        if self.validation_fraction + self.test_fraction >= 1.0:
            fail("test_fraction", "validation_fraction + test_fraction must be < 1")
        return self


@section
class Clips:
    """Runs of consecutive decoded frames (stride 1) of each video, for temporal models."""

    length: Annotated[Int, Field(ge=2)]  # frames per clip
    per_split: Annotated[Int, Field(ge=0)]  # clips per video and split, evenly spaced; 0: none


@section
class NoiseEstimate:
    """Each source's noise level, measured by extract on native-scale frames (before any
    resize) with Donoho's estimator (core.noise_level), for the `auto` role."""

    frames: AtLeast1  # frames measured per source: its first ones (a folder: evenly spaced)
    auto_threshold: NonNegative  # auto: noisy above this median estimate (0-255), else clean
    curve_bins: AtLeast1  # the noise-level curve: std-dev in this many intensity bins ...
    curve_min_blocks: AtLeast1  # ... each from at least this many 2x2 blocks (else NaN)
    max_saturated: Fraction  # a frame with more values at 0 or 255 than this gives no estimate


@section
class Extract:
    size: Annotated[Int, Field(ge=8)]
    frame_stride: AtLeast1
    target_fps: Positive | None
    frames_per_shard: AtLeast1
    allow_greyscale: Bool
    min_decoded_fraction: Fraction
    split: Split
    # Sources (names under paths.raw) whose every frame is a train frame: extra variety, such as
    # a photo library, that never enters the validation or test sets.
    train_only: list[Source]
    # Each source's role: clean (a target, noise added to it), noisy (no clean copy: cropped at
    # native scale, never a target), or auto (noise_estimate decides); sources not named here
    # take default_role.
    roles: dict[Source, Role]
    default_role: Role
    noise_estimate: NoiseEstimate
    clips: Clips

    def role(self, source: str) -> str:
        """The role params give a source (a name under paths.raw): clean, noisy or auto."""
        return self.roles.get(source, self.default_role)


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
