"""params.yaml's train section, and the noise a model trains on: what validation and the model
builders need (a model's resolved spec, its window, the size rules of its architecture).

What each model trains with (its budget, its starting weights, the settings the init stage
writes) is resolved in denoise.training.settings, above the model builders.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from denoise.core.architectures import ARCHITECTURES
from denoise.core.errors import ConfigError
from denoise.core.schema import (
    AtLeast1,
    Bool,
    Float,
    FlowMethod,
    Fraction,
    InitSource,
    Int,
    Invalid,
    Multiple4,
    Name,
    NoiseKind,
    NonNegative,
    Positive,
    Precision,
    Sampling,
    Schedule,
    Supervision,
    WarpInterpolation,
    fail,
    section,
)


@section
class TrainNoise:
    kind: NoiseKind
    sigma: NonNegative
    sigma_min: NonNegative
    sigma_max: NonNegative
    peak: Positive
    variance: NonNegative
    amount: Fraction
    # camera: log(shot) ~ U(log shot_min, log shot_max) per image, and
    # log(read) = read_slope * log(shot) + read_intercept + N(0, read_spread), natural logs
    shot_min: Positive
    shot_max: Positive
    read_slope: Float
    read_intercept: Float
    read_spread: NonNegative
    jpeg_quality: Annotated[Int, Field(ge=1, le=100)]  # compressed: camera noise, then JPEG
    as_saved: Bool  # clip to [0, 1] and round to 8 bits after adding the noise

    @model_validator(mode="after")
    def _range(self) -> TrainNoise:
        if self.sigma_min > self.sigma_max:
            fail("sigma_min", "must be <= sigma_max")
        if self.shot_min > self.shot_max:
            fail("shot_min", "must be <= shot_max")
        return self


@section
class VariantNoise:
    """A variant's own training noise: each key left null takes noise.train's."""

    kind: NoiseKind | None = None
    sigma: NonNegative | None = None
    sigma_min: NonNegative | None = None
    sigma_max: NonNegative | None = None
    peak: Positive | None = None
    variance: NonNegative | None = None
    amount: Fraction | None = None
    shot_min: Positive | None = None
    shot_max: Positive | None = None
    read_slope: Float | None = None
    read_intercept: Float | None = None
    read_spread: NonNegative | None = None
    jpeg_quality: Annotated[Int, Field(ge=1, le=100)] | None = None
    as_saved: Bool | None = None

    def overrides(self) -> dict[str, Any]:
        """The keys this variant sets, to apply to noise.train."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


@section
class WithoutClean:
    """How models of supervision noisy learn: frame-to-frame targets and Neighbor2Neighbor."""

    flow: FlowMethod
    warp: WarpInterpolation  # how the neighbour is sampled: nearest keeps its noise whole
    prefilter_sigma: NonNegative  # Gaussian blur (pixels) of the grey frames flow runs on
    consistency_pixels: NonNegative  # forward-backward flow disagreement allowed, pixels ...
    consistency_ratio: NonNegative  # ... plus this share of the squared motion
    photometric_tolerance: Fraction  # blurred warped neighbour vs blurred frame, [0, 1] scale
    min_coverage: Fraction  # a frame pair keeping fewer of its pixels is dropped (a cut)
    gamma: NonNegative  # Neighbor2Neighbor's regulariser weight


@section
class ModelBudget:
    """One model's own settings within a profile; each one left null takes the profile's."""

    # Starting weights: pretrained, champion (schema.INIT_*), a .keras path, an MLflow URI.
    init_from: InitSource | None = None
    learning_rate: Positive | None = None
    warmup_steps: Int | None = None
    epochs: AtLeast1 | None = None
    steps_per_epoch: AtLeast1 | None = None
    early_stopping_patience: AtLeast1 | None = None
    clip_norm: Positive | None = None

    def overrides(self) -> dict[str, Any]:
        """The profile settings this model sets for itself: its fields that are Profile's too."""
        budget = {field.name for field in dataclasses.fields(Profile)}
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name in budget and getattr(self, field.name) is not None
        }


@section
class Profile:
    """A training budget: on what patches, for how long, at what learning rate."""

    patch_size: Multiple4
    batch_size: AtLeast1
    epochs: AtLeast1
    steps_per_epoch: AtLeast1
    learning_rate: Positive
    schedule: Schedule
    min_learning_rate: NonNegative
    warmup_steps: Annotated[Int, Field(ge=0)]
    early_stopping_patience: AtLeast1
    precision: Precision
    sampling: Sampling
    clip_norm: Positive | None  # the gradients' global norm is clipped to this
    # An epoch whose training loss is non-finite or this many times the lowest epoch loss so far
    # is undone: back to the previous epoch's checkpoint, at half the learning rate.
    divergence_factor: Annotated[Float, Field(gt=1)]
    max_rollbacks: Annotated[Int, Field(ge=0)]  # one divergence more ends training
    # Per model: starting weights and its own budget (ModelBudget), by model name; none: {}.
    per_model: dict[Name, ModelBudget] = dataclasses.field(default_factory=dict)

    @model_validator(mode="after")
    def _schedule(self) -> Profile:
        if self.min_learning_rate > self.learning_rate:
            fail("min_learning_rate", "must be in [0, learning_rate]")
        if self.warmup_steps >= self.epochs * self.steps_per_epoch:
            fail("warmup_steps", "must be less than epochs * steps_per_epoch")
        return self


def _settings(architecture: str, value: Any) -> Any:
    """`value` (a mapping, or already settings) as the settings of `architecture`; raises
    Invalid starting with the key within them that is wrong."""
    kind = ARCHITECTURES[architecture].settings
    if kind is None:
        raise PydanticCustomError("no_settings", f"{architecture} has no settings")
    if type(value) is kind:
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("dict_type", "expected a mapping")
    try:
        return kind(**value)
    except ConfigError as error:
        raise Invalid(str(error)) from None


@section
class Variant:
    """A named model: an architecture with its own settings and training noise.

    Unset settings are the train section's for its architecture (train.architectures), and
    unset noise keys noise.train's (config.Params checks the noise they make).
    """

    architecture: Name
    noise: VariantNoise | None = None
    supervision: Supervision | None = None  # None: train.supervision
    settings: Any = None  # its architecture's settings, whole (train.architectures.<its>)

    @field_validator("architecture")
    @classmethod
    def _known(cls, architecture: str) -> str:
        if architecture not in ARCHITECTURES:
            raise PydanticCustomError(
                "literal_error", "unknown architecture", {"expected": ", ".join(ARCHITECTURES)}
            )
        return architecture

    @field_validator("settings")
    @classmethod
    def _settings(cls, settings: Any, info: ValidationInfo) -> Any:
        architecture = info.data.get("architecture")
        if settings is None or architecture is None:  # None: an unknown one, already reported
            return settings
        return _settings(architecture, settings)


@section
class Train:
    profile: Name
    # The models to train, one train@<model> stage each. A flat key: DVC's foreach reads it.
    models: Annotated[list[Name], Field(min_length=1)]
    profiles: dict[Name, Profile]
    variants: dict[Name, Variant]
    # Each architecture's settings, by name: those of every row of core.architectures that
    # has settings, each validated by its row's settings class.
    architectures: dict[Name, Any]
    # Every model's supervision unless its variant sets its own.
    supervision: Supervision
    without_clean: WithoutClean

    @field_validator("architectures")
    @classmethod
    def _architectures(cls, architectures: dict[str, Any]) -> dict[str, Any]:
        for name in architectures:
            if name not in ARCHITECTURES:
                fail(name, f"unknown architecture (known: {', '.join(ARCHITECTURES)})")
            if ARCHITECTURES[name].settings is None:
                fail(name, f"{name} has no settings")
        for name, row in ARCHITECTURES.items():
            if row.settings is not None and name not in architectures:
                fail(name, "missing: params.yaml must set every key")
        resolved = {}
        for name, value in architectures.items():
            try:
                resolved[name] = _settings(name, value)
            except Invalid as error:
                raise Invalid(f"{name}.{error}") from None
            except PydanticCustomError as error:
                raise Invalid(f"{name}: {error.message()}") from None
        return resolved

    @model_validator(mode="after")
    def _models(self) -> Train:
        if self.profile not in self.profiles:
            fail("profile", f"{self.profile!r} is not one of profiles ({', '.join(self.profiles)})")
        for name in self.variants:
            if name in ARCHITECTURES:
                fail(f"variants.{name}", "must not reuse an architecture's name")
        known = (*ARCHITECTURES, *self.variants)
        for index, name in enumerate(self.models):
            if name not in known:
                fail(f"models[{index}]", f"unknown model {name!r} (known: {', '.join(known)})")
            if name in self.models[:index]:
                fail(f"models[{index}]", f"{name!r} is listed twice")
        for profile_name, profile in self.profiles.items():
            for name, own in profile.per_model.items():
                where = f"profiles.{profile_name}.per_model.{name}"
                if name not in known:
                    fail(where, f"unknown model {name!r} (known: {', '.join(known)})")
                try:
                    dataclasses.replace(profile, **own.overrides())
                except ConfigError as error:
                    raise Invalid(f"{where}.{error}") from None
        for index, name in enumerate(self.models):
            window = self.window(name)
            if self.supervision_of(name) == "noisy" and window > 1:
                fail(
                    f"models[{index}]",
                    f"{name} has a window of {window} frames; supervision noisy trains image "
                    "models only (a neighbour in the window would be its own target)",
                )
        patch_size = self.active.patch_size
        for name in self.models:
            problem = self.size_problem(name, patch_size)
            if problem is not None:
                fail(f"profiles.{self.profile}.patch_size", f"{problem}, got {patch_size}")
        noisy = [name for name in self.models if self.supervision_of(name) == "noisy"]
        if noisy and patch_size % (2 * self.size_multiple):
            fail(
                f"profiles.{self.profile}.patch_size",
                f"must be a multiple of {2 * self.size_multiple}: {noisy[0]} learns from noisy "
                f"sources and Neighbor2Neighbor halves its patches, got {patch_size}",
            )
        if patch_size % self.size_multiple:
            fail(
                f"profiles.{self.profile}.patch_size",
                f"must be a multiple of {self.size_multiple} for the models' downsampling, got "
                f"{patch_size}",
            )
        return self

    @property
    def active(self) -> Profile:
        """The active profile, which is what training uses (per model: training.settings)."""
        return self.profiles[self.profile]

    # A profile's settings that no per_model entry can change, so the same for every model.
    @property
    def patch_size(self) -> int:
        return self.active.patch_size

    @property
    def batch_size(self) -> int:
        return self.active.batch_size

    def spec(self, name: str) -> Variant:
        """The model `name` resolved: its architecture and that architecture's settings (None
        for one that has none), and its own training noise (None: noise.train)."""
        variant = self.variants[name] if name in self.variants else Variant(architecture=name)
        if variant.settings is not None:
            return variant
        return dataclasses.replace(variant, settings=self.architectures.get(variant.architecture))

    def supervision_of(self, name: str) -> str:
        """How model `name` learns: "clean" or "noisy" (its variant's, else the section's)."""
        own = self.variants[name].supervision if name in self.variants else None
        return own or self.supervision

    def window(self, name: str) -> int:
        """Frames model `name` sees per output frame: 1 for an image model."""
        spec = self.spec(name)
        return ARCHITECTURES[spec.architecture].window(spec.settings)

    def size_problem(self, name: str, side: int) -> str | None:
        """Why model `name` cannot take frames or patches of `side` pixels (its architecture's
        size rule), else None."""
        spec = self.spec(name)
        return ARCHITECTURES[spec.architecture].size_rule(spec.settings, side)

    def on_clips(self, name: str) -> bool:
        """Whether model `name` trains on the train clips: a temporal model always, an image
        model with the profile's sampling: clips (a per_model entry cannot change it)."""
        return self.window(name) > 1 or self.active.sampling == "clips"

    @property
    def size_multiple(self) -> int:
        """Patches and validation frames must be multiples of this for every active model."""
        specs = [self.spec(name) for name in self.models]
        return max(ARCHITECTURES[spec.architecture].side_multiple(spec.settings) for spec in specs)
