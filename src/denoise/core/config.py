"""Parameters: frozen pydantic dataclasses mirroring params.yaml, and load_params(), their reader.

Each params.yaml section is one frozen pydantic dataclass (denoise.core.schema's `section`:
`extra="forbid"`, `Literal` choices, `Field` bounds, a model validator only for a rule that spans
fields); the train section and training noise are in denoise.core.train_config, the data
sections (samples, extract, noise) in denoise.core.data_config. A changed copy
(`dataclasses.replace`) is validated again, and any error is one ConfigError line naming the
dotted key. load_params() is the only reader of params.yaml (core.params_file parses it).

Defaults live in params.yaml alone: it must set every key, and the code holds no default
value. params.yaml is the documented home of each setting (its comments say what each does),
DVC's `params:` lists and `${paths.*}` name its keys, and DVC compares its values to decide what
reruns: defaults in code as well would be a second copy that can drift (one already had).
The only fields that may be left out mean "not set": a per-model budget's nulls and its
`per_model` (take the profile's), a variant's sections (take the train section's).
params.yaml ships inside the package (src/denoise/params.yaml links to it), so `denoise apply`
outside a project reads the same values through default_params().
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from denoise.core.data_config import (
    Extract,
    Noise,
    Samples,
)
from denoise.core.errors import ConfigError
from denoise.core.params_file import read_values, with_recipe
from denoise.core.schema import (
    ApplyBackend,
    ApplyPrecision,
    AtLeast1,
    Bool,
    EvaluateMethod,
    Float,
    Fraction,
    Int,
    Invalid,
    Name,
    NonNegative,
    NotBlank,
    Positive,
    RelativeFolder,
    Str,
    fail,
    section,
)
from denoise.core.train_config import Train


@section
class Paths:
    # Written by the preflight stage, which every stage depends on: constant, so it reruns nothing.
    preflight: Str
    raw: Str
    frames: Str
    evalsets: Str
    validation: Str
    init: Str
    models: Str
    train_reports: Str
    checkpoints: Str
    evaluation: Str
    metrics: Str
    psnr_per_sigma: Str
    registry: Str
    summary: Str

    def every(self) -> list[str]:
        """Every path, in params.yaml's order."""
        return [getattr(self, field.name) for field in dataclasses.fields(self)]


@section
class FrameChecks:
    min_frames_per_video: AtLeast1
    mean_min: Fraction
    mean_max: Fraction
    min_std: Annotated[Float, Field(ge=0, le=0.5)]
    max_duplicate_fraction: Fraction
    near_duplicate_difference: Annotated[Float, Field(ge=0, lt=1)]
    max_clean_noise_sigma: NonNegative  # a clean source's estimated noise level (0-255) at most

    @model_validator(mode="after")
    def _means(self) -> FrameChecks:
        if self.mean_min >= self.mean_max:
            fail("mean_min", f"must be < mean_max, got {self.mean_min} and {self.mean_max}")
        return self


@section
class EvaluationSetChecks:
    sigma_tolerance: Positive


@section
class ResultChecks:
    psnr_min: Float
    psnr_max: Float
    min_gain_over_noisy_db: Float

    @model_validator(mode="after")
    def _range(self) -> ResultChecks:
        if self.psnr_min >= self.psnr_max:
            fail("psnr_min", f"must be < psnr_max, got {self.psnr_min} and {self.psnr_max}")
        return self


@section
class Validate:
    frames: FrameChecks
    evaluation_sets: EvaluationSetChecks
    results: ResultChecks


@section
class Evaluate:
    methods: list[EvaluateMethod]
    blur_sigma: Positive
    median_size: Literal[3, 5]  # float images: OpenCV's median takes 3 or 5
    nlm_h_factor: Positive
    # BM3D (seconds per frame) and BM4D (seconds per clip frame) run at these evaluation
    # levels only, BM3D on the first bm3d_max_images images of each set (None: every
    # image); [] runs them at every level.
    bm3d_levels: list[Str]
    bm3d_max_images: Annotated[Int, Field(ge=0)] | None
    num_triptychs: Annotated[Int, Field(ge=0)]


@section
class Tracking:
    experiment: NotBlank
    local_store: RelativeFolder
    num_samples: Annotated[Int, Field(ge=0)]
    system_metrics_seconds: NonNegative  # training runs sample system use this often; 0: off


@section
class Services:
    """How long to wait for the tracking server, the Prefect API and the DVC remote."""

    timeout_seconds: Positive  # one request: connect, or wait for an answer
    # Transient errors (5xx, reset, timeout) are retried, waiting at most this long in all;
    # connection refused, unknown hosts and refused credentials fail at once.
    retry_seconds: NonNegative


@section
class Alerts:
    """Thresholds of the Prefect automations (flows/alerts.py)."""

    # A pipeline run that Prefect marked late and that has not started this long after; at
    # least 10 s, Prefect's shortest wait for a proactive trigger.
    late_after_seconds: Annotated[Float, Field(ge=10)]


@section
class Register:
    model_name: Name
    video_model_name: Name  # temporal models (train.window > 1)
    score_set: Name
    promotion_margin_db: NonNegative
    # A run with noisy sources: champion moves on the held-out frame-to-frame loss (dB) by
    # noisy_margin_db, if the candidate loses at most clean_guard_db of PSNR on score_set.
    noisy_margin_db: NonNegative
    clean_guard_db: NonNegative

    @model_validator(mode="after")
    def _apart(self) -> Register:
        if self.video_model_name == self.model_name:
            fail(
                "video_model_name", "must not be model_name (image and video models compete apart)"
            )
        return self


@section
class Apply:
    tile_size: Annotated[Int, Field(ge=16, multiple_of=4)]  # paper_cae pools twice
    overlap: Annotated[Int, Field(ge=0, multiple_of=4)]
    batch_size: AtLeast1
    self_ensemble: Bool
    precision: ApplyPrecision  # models.at_precision
    whole_megapixels: NonNegative  # frames up to this size (padded) run whole (serving.tiling)
    backend: ApplyBackend  # serving.backends
    converted_dir: NotBlank  # the kept OpenVINO copies, by the .keras file's SHA-256; ~ expands
    # how far (0-255) an input's estimated noise level may lie outside the model's trained
    # range before `denoise apply` warns (serving.input_noise)
    noise_tolerance: NonNegative
    # The served model's limits (serving.guard): a request body in megabytes of 10^6 bytes,
    # an image in millions of pixels, and how far outside [0, 1] a value may lie.
    max_request_megabytes: Positive
    max_megapixels: Positive
    value_margin: NonNegative

    @model_validator(mode="after")
    def _overlap(self) -> Apply:
        if 2 * self.overlap > self.tile_size:
            fail("overlap", f"must be at most tile_size / 2, got {self.overlap}")
        return self


@section
class Quality:
    """Targets of bench/quality.py (no stage reads them). Its sigmas are noise.evaluation's
    Gaussian levels and its headline level noise.validation_sigma."""

    bm3d_goal_db: Float  # the best model should beat BM3D by this much
    blind_gap_db: Annotated[Float, Field(ge=0)]  # a blind model may trail its twin this much
    fast_speedup: Annotated[Float, Field(ge=1)]  # "fast": at most BM3D's time per frame / this
    stretch_speedup: Annotated[Float, Field(ge=1)]  # ... and the stretch goal: / this

    @model_validator(mode="after")
    def _stretch(self) -> Quality:
        if self.stretch_speedup < self.fast_speedup:
            fail("stretch_speedup", "must be >= fast_speedup")
        return self


@section
class NoisyFootage:
    """bench/noisy_footage.py, the benchmark of learning without clean targets (no stage reads
    it): the sample videos' train split made noisy at each level, and the targets it checks."""

    levels: list[NotBlank]  # noise.evaluation's camera or compressed levels: one table each
    budget_of: Name  # every candidate trains on this model's budget in the active profile ...
    epochs: AtLeast1 | None  # ... for this many of its epochs (null: the budget's own)
    clips_per_split: AtLeast1  # extract.clips.per_split: train clips to learn from, test clips
    test_frames: AtLeast1  # noise.max_frames: test frames every method is scored on, BM3D too
    test_clips: AtLeast1  # noise.max_clips: test clips (tPSNR, held-out pairs of the ranking)
    pairs_per_clip: AtLeast1  # held-out frame-to-frame pairs per test clip (the ranking)
    gain_over_shipped_db: Float  # targets: frame-to-frame beats the shipped model by this ...
    oracle_gap_db: NonNegative  # ... trails the oracle by at most this ...
    bm3d_margin_db: Float  # ... and beats BM3D with estimated sigma by this


@section
class Params:
    seed: Annotated[Int, Field(ge=0)]
    paths: Paths
    samples: Samples
    extract: Extract
    noise: Noise
    validate: Validate
    train: Train
    evaluate: Evaluate
    tracking: Tracking
    services: Services
    alerts: Alerts
    register: Register
    apply: Apply
    quality: Quality
    noisy_footage: NoisyFootage
    # Named sets of params a profile cannot hold, {dotted key: value} each: `denoise recipe`.
    recipes: dict[Name, dict[Str, Any]]

    @model_validator(mode="after")
    def _clean_noise(self) -> Params:
        threshold = self.extract.noise_estimate.auto_threshold
        if self.validate.frames.max_clean_noise_sigma < threshold:
            fail(
                "validate.frames.max_clean_noise_sigma",
                f"must be >= extract.noise_estimate.auto_threshold ({threshold:g}), or an auto "
                "source found clean would fail validate",
            )
        return self

    @model_validator(mode="after")
    def _sizes(self) -> Params:
        leaves = self.samples.dead_leaves
        if "dead_leaves" in self.extract.train_only or "dead_leaves" in self.samples.stills:
            for index, folder in enumerate(leaves.colours_from):
                if folder not in self.extract.train_only:
                    fail(
                        f"samples.dead_leaves.colours_from[{index}]",
                        f"{folder!r} is not in extract.train_only: dead leaves take their "
                        "colours from train images only",
                    )
        # Training validates on whole frames; evaluation pads, so photograph_size is free.
        train, size = self.train, self.extract.size
        if size % train.size_multiple:
            fail(
                "extract.size",
                f"must be divisible by {train.size_multiple} for the models of profile "
                f"{train.profile!r} (their downsampling), got {size}",
            )
        if train.patch_size > size:
            fail(
                f"train.profiles.{train.profile}.patch_size",
                f"{train.patch_size} is larger than the frames (extract.size {size})",
            )
        for name in train.models:
            if train.on_clips(name) and self.extract.clips.per_split == 0:
                fail("extract.clips.per_split", f"must be > 0: {name} trains on clips")
            window = train.window(name)
            if train.on_clips(name) and self.extract.clips.length < window:
                fail(
                    "extract.clips.length",
                    f"must be at least {name}'s window of {window} frames, got "
                    f"{self.extract.clips.length}",
                )
        for name, variant in train.variants.items():
            try:
                if variant.noise is not None:
                    dataclasses.replace(self.noise.train, **variant.noise.overrides())
            except ConfigError as error:
                raise Invalid(f"train.variants.{name}.noise.{error}") from None
        for key, side in (
            ("extract.size", size),
            ("noise.photograph_size", self.noise.photograph_size),
        ):
            for name in train.models:
                problem = train.size_problem(name, side)
                if problem is not None:
                    fail(key, f"{problem} for {name}, got {side}")
        return self


def params_from_dict(values: dict[str, Any]) -> Params:
    """Build Params from a parsed params.yaml mapping, which must set every key. Every recipe
    must give valid params too."""
    if not isinstance(values, dict):
        raise ConfigError("params: expected a mapping at the top level")
    params = Params(**values)
    for name in params.recipes:
        try:
            Params(**{**with_recipe(values, name), "recipes": {}})
        except ConfigError as error:
            raise ConfigError(f"recipes.{name}: {error}") from None
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raise ConfigError naming the file and key on bad input."""
    values = read_values(path)
    try:
        return params_from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


@functools.cache
def default_params() -> Params:
    """The project's params.yaml as shipped in the package (for use outside a project)."""
    with importlib.resources.as_file(importlib.resources.files("denoise") / "params.yaml") as path:
        return load_params(path)


def params_to_dict(params: Params) -> dict[str, Any]:
    """The nested mapping params.yaml would hold for these params."""
    return dataclasses.asdict(params)
