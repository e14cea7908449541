"""params.yaml's extract section: frame size and sampling, time-block splits, clips, and each
source's role (clean, noisy or auto) with the noise estimate that decides `auto`.

Frozen pydantic dataclasses (denoise.core.schema's `section`), read through
denoise.core.config.load_params like every section.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from denoise.core.schema import (
    AtLeast1,
    Bool,
    Float,
    Fraction,
    Int,
    NonNegative,
    Positive,
    Role,
    Source,
    fail,
    section,
)


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
