"""params.yaml's train section, and the noise a model trains on: what validation and the model
builders need (a model's resolved spec, its window, the size rules of its architecture).

What each model trains with (its budget, its starting weights, the settings the init stage
writes) is resolved in denoise.training.settings, above the model builders.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from denoise.core.architectures import ARCHITECTURES
from denoise.core.errors import ConfigError
from denoise.core.schema import (
    MODEL_NAMES,
    ArchitectureName,
    AtLeast1,
    Bool,
    Float,
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
    Widths,
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
    as_saved: Bool  # clip to [0, 1] and round to 8 bits after adding the noise

    @model_validator(mode="after")
    def _range(self) -> TrainNoise:
        if self.sigma_min > self.sigma_max:
            fail("sigma_min", "must be <= sigma_max")
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
    as_saved: Bool | None = None

    def overrides(self) -> dict[str, Any]:
        """The keys this variant sets, to apply to noise.train."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


@section
class DnCNN:
    """DnCNN (Zhang et al. 2017): `depth` 3x3 conv layers of `width` channels."""

    depth: Annotated[Int, Field(ge=3)]  # first, middle, last
    width: AtLeast1
    batch_norm: Bool


@section
class FFDNet(DnCNN):
    """FFDNet-style: DnCNN's stack on 2x2-packed pixels, with an estimated noise-level map."""

    noise_map: Bool  # false: no map, the network infers the level itself


@section
class DRUNet:
    """A DRUNet-style U-Net: one level per width, `blocks_per_level` residual blocks each."""

    widths: Widths
    blocks_per_level: AtLeast1

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this: one 2x downsampling per extra level."""
        return 2 ** (len(self.widths) - 1)


@section
class FastDVDnet:
    """FastDVDnet-style: `window` frames; U-Net blocks (DRUNet's, `widths`) on each triplet,
    then one on their outputs (stages 2), or one block on the whole window (stages 1)."""

    window: Literal[3, 5, 7, 9, 11]  # odd: a triplet around the middle frame, or more
    widths: Widths
    blocks_per_level: AtLeast1
    stages: Literal[1, 2]

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this: one 2x downsampling per extra level."""
        return 2 ** (len(self.widths) - 1)


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


@section
class Variant:
    """A named model: an architecture with its own settings and training noise.

    Unset sections take the train section's architecture settings, and unset noise keys
    noise.train's (config.Params checks the noise they make).
    """

    architecture: ArchitectureName
    noise: VariantNoise | None = None
    dncnn: DnCNN | None = None
    ffdnet: FFDNet | None = None
    drunet: DRUNet | None = None
    fastdvdnet: FastDVDnet | None = None


@section
class Train:
    profile: Name
    # The models to train, one train@<model> stage each. A flat key: DVC's foreach reads it.
    models: Annotated[list[Name], Field(min_length=1)]
    profiles: dict[Name, Profile]
    variants: dict[Name, Variant]
    dense_patch: AtLeast1
    dense_stride: AtLeast1
    dense_hidden: AtLeast1
    dense_code: AtLeast1
    dncnn: DnCNN
    ffdnet: FFDNet
    drunet: DRUNet
    fastdvdnet: FastDVDnet

    @model_validator(mode="after")
    def _models(self) -> Train:
        if self.profile not in self.profiles:
            fail("profile", f"{self.profile!r} is not one of profiles ({', '.join(self.profiles)})")
        for name in self.variants:
            if name in MODEL_NAMES:
                fail(f"variants.{name}", "must not reuse an architecture's name")
        known = (*MODEL_NAMES, *self.variants)
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
        if self.dense_stride > self.dense_patch:
            fail("dense_stride", "must be <= dense_patch")
        patch_size = self.active.patch_size
        for architecture in sorted(self.architectures):
            problem = ARCHITECTURES[architecture].size_rule(self, patch_size)
            if problem is not None:
                fail(f"profiles.{self.profile}.patch_size", problem)
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
        """The model `name` resolved: its architecture and architecture settings, and its own
        training noise (None: noise.train)."""
        variant = self.variants[name] if name in self.variants else Variant(architecture=name)
        return dataclasses.replace(
            variant,
            dncnn=variant.dncnn or self.dncnn,
            ffdnet=variant.ffdnet or self.ffdnet,
            drunet=variant.drunet or self.drunet,
            fastdvdnet=variant.fastdvdnet or self.fastdvdnet,
        )

    def window(self, name: str) -> int:
        """Frames model `name` sees per output frame: 1 for an image model."""
        spec = self.spec(name)
        return ARCHITECTURES[spec.architecture].window(spec)

    def on_clips(self, name: str) -> bool:
        """Whether model `name` trains on the train clips: a temporal model always, an image
        model with the profile's sampling: clips (a per_model entry cannot change it)."""
        return self.window(name) > 1 or self.active.sampling == "clips"

    @property
    def architectures(self) -> set[str]:
        """The architectures of the active profile's models."""
        return {self.spec(name).architecture for name in self.models}

    @property
    def size_multiple(self) -> int:
        """Patches and validation frames must be multiples of this for every active model."""
        specs = [self.spec(name) for name in self.models]
        return max(ARCHITECTURES[spec.architecture].side_multiple(spec) for spec in specs)
