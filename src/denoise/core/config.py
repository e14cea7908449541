"""Parameters: frozen dataclasses mirroring params.yaml, and load_params(), their only reader.

Over 400 lines: one dataclass per params.yaml section with the checks of its values, in the
file's order, so the schema reads top to bottom beside params.yaml; split, it would scatter.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from denoise.core.architectures import ARCHITECTURES
from denoise.core.errors import ConfigError

NOISE_KINDS = ("gaussian", "gaussian_blind", "poisson", "speckle", "salt_pepper")
MODEL_NAMES = tuple(ARCHITECTURES)
BASELINE_METHODS = ("noisy", "blur", "median", "nlm", "bm3d")  # image by image
VIDEO_BASELINE_METHODS = ("bm4d",)  # on whole clips: the clip sets only
EVALUATE_METHODS = BASELINE_METHODS + VIDEO_BASELINE_METHODS  # what evaluate.methods may name
STILL_FOLDERS = ("photos", "wallpapers")  # train-only still folders samples can build


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclasses.dataclass(frozen=True)
class Paths:
    # Written by the preflight stage, which every stage depends on: constant, so it reruns nothing.
    preflight: str = "reports/preflight.json"
    raw: str = "data/raw"
    frames: str = "data/frames"
    evalsets: str = "data/evalsets"
    validation: str = "reports/validation"
    init: str = "data/init"
    models: str = "models"
    train_reports: str = "reports/train"
    checkpoints: str = "checkpoints"
    evaluation: str = "reports/evaluation"
    metrics: str = "reports/metrics.json"
    psnr_per_sigma: str = "reports/psnr_per_sigma"
    registry: str = "reports/registry.json"

    def every(self) -> list[str]:
        """Every path, in params.yaml's order."""
        return [getattr(self, field.name) for field in dataclasses.fields(self)]


@dataclasses.dataclass(frozen=True)
class Samples:
    videos: list[str] = dataclasses.field(
        default_factory=lambda: ["box.mp4", "cup.mp4", "vtest.avi"]
    )
    synthetic_frames: int = 240
    # Train-only still folders to build under paths.raw (denoise.data.stills): photos, wallpapers.
    stills: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        _check(self.synthetic_frames >= 1, "synthetic_frames", "must be at least 1")
        for index, name in enumerate(self.stills):
            _check(
                name in STILL_FOLDERS,
                f"stills[{index}]",
                f"unknown still folder {name!r} (known: {', '.join(STILL_FOLDERS)})",
            )


@dataclasses.dataclass(frozen=True)
class Split:
    validation_fraction: float = 0.1
    test_fraction: float = 0.2
    gap_seconds: float = 1.0

    def __post_init__(self) -> None:
        for key in ("validation_fraction", "test_fraction"):
            value = getattr(self, key)
            _check(0.0 <= value < 1.0, key, f"must be in [0, 1), got {value}")
        total = self.validation_fraction + self.test_fraction
        _check(total < 1.0, "test_fraction", "validation_fraction + test_fraction must be < 1")
        _check(self.gap_seconds >= 0.0, "gap_seconds", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class Clips:
    """Runs of consecutive decoded frames (stride 1) of each video, for temporal models."""

    length: int = 15  # frames per clip
    per_split: int = 0  # clips per video and split, evenly spaced in its block; 0: none

    def __post_init__(self) -> None:
        _check(self.length >= 2, "length", f"must be >= 2 frames, got {self.length}")
        _check(self.per_split >= 0, "per_split", f"must be >= 0, got {self.per_split}")


@dataclasses.dataclass(frozen=True)
class Extract:
    size: int = 200
    frame_stride: int = 3
    target_fps: float | None = None
    frames_per_shard: int = 256
    allow_greyscale: bool = False
    min_decoded_fraction: float = 0.5
    split: Split = dataclasses.field(default_factory=Split)
    # Sources (names under paths.raw) whose every frame is a train frame: extra variety, such as
    # a photo library, that never enters the validation or test sets.
    train_only: list[str] = dataclasses.field(default_factory=list)
    clips: Clips = dataclasses.field(default_factory=Clips)

    def __post_init__(self) -> None:
        _check(self.size >= 8, "size", f"must be at least 8 pixels, got {self.size}")
        _check(self.frame_stride >= 1, "frame_stride", f"must be >= 1, got {self.frame_stride}")
        if self.target_fps is not None:
            _check(self.target_fps > 0, "target_fps", f"must be > 0, got {self.target_fps}")
        _check(self.frames_per_shard >= 1, "frames_per_shard", "must be >= 1")
        _check(0.0 <= self.min_decoded_fraction <= 1.0, "min_decoded_fraction", "must be in [0, 1]")
        for index, name in enumerate(self.train_only):
            _check(bool(name), f"train_only[{index}]", "must name a source under paths.raw")


@dataclasses.dataclass(frozen=True)
class TrainNoise:
    kind: str = "gaussian_blind"
    sigma: float = 25.0
    sigma_min: float = 5.0
    sigma_max: float = 55.0
    peak: float = 30.0
    variance: float = 0.04
    amount: float = 0.05
    as_saved: bool = False  # clip to [0, 1] and round to 8 bits after adding the noise

    def __post_init__(self) -> None:
        _check(self.kind in NOISE_KINDS, "kind", f"must be one of {', '.join(NOISE_KINDS)}")
        for key in ("sigma", "sigma_min", "sigma_max", "variance"):
            value = getattr(self, key)
            _check(value >= 0, key, f"must be >= 0, got {value}")
        _check(self.sigma_min <= self.sigma_max, "sigma_min", "must be <= sigma_max")
        _check(self.peak > 0, "peak", f"must be > 0, got {self.peak}")
        _check(0.0 <= self.amount <= 1.0, "amount", f"must be in [0, 1], got {self.amount}")


@dataclasses.dataclass(frozen=True)
class EvaluationNoise:
    gaussian: list[float] = dataclasses.field(default_factory=lambda: [15.0, 25.0, 50.0])
    poisson: list[float] = dataclasses.field(default_factory=list)
    speckle: list[float] = dataclasses.field(default_factory=list)
    salt_pepper: list[float] = dataclasses.field(default_factory=list)
    as_saved: list[float] = dataclasses.field(default_factory=lambda: [25.0])

    def __post_init__(self) -> None:
        for index, sigma in enumerate(self.as_saved):
            _check(
                sigma in self.gaussian,
                f"as_saved[{index}]",
                f"{sigma:g} is not one of gaussian {self.gaussian}",
            )
        for index, sigma in enumerate(self.gaussian):
            _check(sigma >= 0, f"gaussian[{index}]", f"sigma must be >= 0, got {sigma}")
        for index, peak in enumerate(self.poisson):
            _check(peak > 0, f"poisson[{index}]", f"peak must be > 0, got {peak}")
        for index, variance in enumerate(self.speckle):
            _check(variance >= 0, f"speckle[{index}]", f"variance must be >= 0, got {variance}")
        for index, amount in enumerate(self.salt_pepper):
            _check(0 <= amount <= 1, f"salt_pepper[{index}]", f"must be in [0, 1], got {amount}")

    def levels(self) -> list[tuple[str, float]]:
        """Every (kind, level) pair, in a fixed order."""
        return [
            (kind, float(level))
            for kind in ("gaussian", "poisson", "speckle", "salt_pepper")
            for level in getattr(self, kind)
        ]


@dataclasses.dataclass(frozen=True)
class Noise:
    train: TrainNoise = dataclasses.field(default_factory=TrainNoise)
    evaluation: EvaluationNoise = dataclasses.field(default_factory=EvaluationNoise)
    validation_sigma: float = 25.0
    max_frames: int = 12
    max_clips: int | None = None  # clips per clip set, evenly spaced over it (None: all)
    photographs: list[str] = dataclasses.field(
        default_factory=lambda: ["astronaut", "chelsea", "coffee", "rocket"]
    )
    photograph_size: int = 256

    def __post_init__(self) -> None:
        _check(self.validation_sigma >= 0, "validation_sigma", "must be >= 0")
        _check(
            self.validation_sigma in self.evaluation.gaussian,
            "validation_sigma",
            f"{self.validation_sigma} is not one of evaluation.gaussian {self.evaluation.gaussian}",
        )
        _check(self.max_frames >= 1, "max_frames", "must be >= 1")
        _check(self.max_clips is None or self.max_clips >= 1, "max_clips", "must be >= 1 or null")
        _check(self.photograph_size >= 8, "photograph_size", "must be >= 8")


@dataclasses.dataclass(frozen=True)
class FrameChecks:
    min_frames_per_video: int = 30
    mean_min: float = 0.02
    mean_max: float = 0.98
    min_std: float = 0.02
    max_duplicate_fraction: float = 0.1
    near_duplicate_difference: float = 0.001

    def __post_init__(self) -> None:
        _check(self.min_frames_per_video >= 1, "min_frames_per_video", "must be >= 1")
        _check(
            0.0 <= self.mean_min < self.mean_max <= 1.0,
            "mean_min",
            f"need 0 <= mean_min < mean_max <= 1, got {self.mean_min} and {self.mean_max}",
        )
        _check(0.0 <= self.min_std <= 0.5, "min_std", f"must be in [0, 0.5], got {self.min_std}")
        _check(
            0.0 <= self.max_duplicate_fraction <= 1.0,
            "max_duplicate_fraction",
            f"must be in [0, 1], got {self.max_duplicate_fraction}",
        )
        _check(
            0.0 <= self.near_duplicate_difference < 1.0,
            "near_duplicate_difference",
            f"must be in [0, 1), got {self.near_duplicate_difference}",
        )


@dataclasses.dataclass(frozen=True)
class EvaluationSetChecks:
    sigma_tolerance: float = 0.05

    def __post_init__(self) -> None:
        _check(self.sigma_tolerance > 0, "sigma_tolerance", "must be > 0")


@dataclasses.dataclass(frozen=True)
class ResultChecks:
    psnr_min: float = 5.0
    psnr_max: float = 60.0
    min_gain_over_noisy_db: float = 1.0

    def __post_init__(self) -> None:
        _check(
            self.psnr_min < self.psnr_max,
            "psnr_min",
            f"must be < psnr_max, got {self.psnr_min} and {self.psnr_max}",
        )


@dataclasses.dataclass(frozen=True)
class Validate:
    frames: FrameChecks = dataclasses.field(default_factory=FrameChecks)
    evaluation_sets: EvaluationSetChecks = dataclasses.field(default_factory=EvaluationSetChecks)
    results: ResultChecks = dataclasses.field(default_factory=ResultChecks)


@dataclasses.dataclass(frozen=True)
class DnCNN:
    """DnCNN (Zhang et al. 2017): `depth` 3x3 conv layers of `width` channels."""

    depth: int = 17
    width: int = 64
    batch_norm: bool = True

    def __post_init__(self) -> None:
        _check(self.depth >= 3, "depth", f"must be >= 3 (first, middle, last), got {self.depth}")
        _check(self.width >= 1, "width", f"must be >= 1, got {self.width}")


@dataclasses.dataclass(frozen=True)
class FFDNet(DnCNN):
    """FFDNet-style: DnCNN's stack on 2x2-packed pixels, with an estimated noise-level map."""

    depth: int = 12
    width: int = 64
    batch_norm: bool = True
    noise_map: bool = True  # false: no map, the network infers the level itself


@dataclasses.dataclass(frozen=True)
class DRUNet:
    """A DRUNet-style U-Net: one level per width, `blocks_per_level` residual blocks each."""

    widths: list[int] = dataclasses.field(default_factory=lambda: [64, 128, 256, 512])
    blocks_per_level: int = 4

    def __post_init__(self) -> None:
        _check(len(self.widths) >= 1, "widths", "must name at least one level")
        for index, width in enumerate(self.widths):
            _check(width >= 1, f"widths[{index}]", f"must be >= 1, got {width}")
        _check(self.blocks_per_level >= 1, "blocks_per_level", "must be >= 1")

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this: one 2x downsampling per extra level."""
        return 2 ** (len(self.widths) - 1)


@dataclasses.dataclass(frozen=True)
class FastDVDnet:
    """FastDVDnet-style: `window` frames; U-Net blocks (DRUNet's, `widths`) on each triplet,
    then one on their outputs (stages 2), or one block on the whole window (stages 1)."""

    window: int = 5
    widths: list[int] = dataclasses.field(default_factory=lambda: [32, 64, 128])
    blocks_per_level: int = 1
    stages: int = 2

    def __post_init__(self) -> None:
        _check(
            self.window >= 3 and self.window % 2 == 1,
            "window",
            f"must be odd and >= 3 (a triplet around the frame), got {self.window}",
        )
        _check(self.stages in (1, 2), "stages", f"must be 1 or 2, got {self.stages}")
        DRUNet(self.widths, self.blocks_per_level)  # the same checks as a U-Net's

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this: one 2x downsampling per extra level."""
        return 2 ** (len(self.widths) - 1)


# frames: every train frame is equally likely; sources: every source (video or image folder)
# is, then a frame within it, so a short photo folder weighs as much as a long video; clips:
# windows of the train clips (extract.clips), which temporal models always train on, and
# single-frame models then on the windows' middle frames.
SAMPLINGS = ("frames", "sources", "clips")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
APPLY_PRECISIONS = ("float32", "bfloat16")  # what apply computes in


# Where a model's starting weights come from (ModelBudget.init_from), besides a .keras path
# and an MLflow model URI (models:/<name>@<alias>, runs:/<id>/model): the model shipped with
# the package, or the registry's champion when it is of the same architecture, else the
# shipped model (what scheduled retraining wants: the first run fine-tunes the shipped model,
# later ones the champion).
INIT_PRETRAINED, INIT_CHAMPION = "pretrained", "champion"


@dataclasses.dataclass(frozen=True)
class ModelBudget:
    """One model's own settings within a profile; each one left null takes the profile's."""

    init_from: str | None = None  # starting weights (INIT_*, a .keras path, an MLflow URI)
    learning_rate: float | None = None
    warmup_steps: int | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    early_stopping_patience: int | None = None
    clip_norm: float | None = None
    # Measured training rate on the profile's hardware, images/s: the profile's time budget.
    images_per_second: float | None = None

    def __post_init__(self) -> None:
        source = self.init_from
        _check(
            source is None
            or source in (INIT_PRETRAINED, INIT_CHAMPION)
            or source.endswith(".keras")
            or source.startswith(("models:/", "runs:/")),
            "init_from",
            f"{source!r} is none of: null, {INIT_PRETRAINED}, {INIT_CHAMPION}, a .keras file, "
            "models:/<name>@<alias>, runs:/<run id>/model",
        )
        _check(
            self.images_per_second is None or self.images_per_second > 0,
            "images_per_second",
            "must be > 0",
        )

    def overrides(self) -> dict[str, Any]:
        """The profile settings this model sets for itself: its fields that are Profile's too."""
        budget = {field.name for field in dataclasses.fields(Profile)}
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name in budget and getattr(self, field.name) is not None
        }


@dataclasses.dataclass(frozen=True)
class Profile:
    """A training budget: on what patches, for how long, at what learning rate."""

    patch_size: int = 96
    batch_size: int = 16
    epochs: int = 10
    steps_per_epoch: int = 40
    learning_rate: float = 1e-3
    schedule: str = "constant"
    min_learning_rate: float = 0.0
    warmup_steps: int = 0
    early_stopping_patience: int = 4
    precision: str = "float32"
    sampling: str = "frames"
    clip_norm: float | None = None  # the gradients' global norm is clipped to this
    # An epoch whose training loss is non-finite or this many times the lowest epoch loss so far
    # is undone: back to the previous epoch's checkpoint, at half the learning rate.
    divergence_factor: float = 10.0
    max_rollbacks: int = 3  # epochs undone at most; one more divergence ends training
    # Per model: starting weights and its own budget (ModelBudget), by model name.
    per_model: dict[str, ModelBudget] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.sampling in SAMPLINGS, "sampling", f"must be one of {', '.join(SAMPLINGS)}")
        _check(
            self.patch_size % 4 == 0 and self.patch_size >= 8,
            "patch_size",
            f"must be a multiple of 4 and >= 8 (paper_cae pools twice), got {self.patch_size}",
        )
        for key in ("batch_size", "epochs", "steps_per_epoch", "early_stopping_patience"):
            value = getattr(self, key)
            _check(value >= 1, key, f"must be >= 1, got {value}")
        _check(self.learning_rate > 0, "learning_rate", "must be > 0")
        _check(self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}")
        _check(
            0 <= self.min_learning_rate <= self.learning_rate,
            "min_learning_rate",
            "must be in [0, learning_rate]",
        )
        _check(
            0 <= self.warmup_steps < self.epochs * self.steps_per_epoch,
            "warmup_steps",
            "must be >= 0 and less than epochs * steps_per_epoch",
        )
        _check(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
        _check(
            self.clip_norm is None or self.clip_norm > 0,
            "clip_norm",
            f"must be > 0 or null, got {self.clip_norm}",
        )
        _check(
            self.divergence_factor > 1,
            "divergence_factor",
            f"must be > 1, got {self.divergence_factor}",
        )
        _check(self.max_rollbacks >= 0, "max_rollbacks", f"must be >= 0, got {self.max_rollbacks}")


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named model: an architecture with its own settings and training noise.

    Unset sections take the train section's architecture settings and noise.train.
    """

    architecture: str
    noise: TrainNoise | None = None
    dncnn: DnCNN | None = None
    ffdnet: FFDNet | None = None
    drunet: DRUNet | None = None
    fastdvdnet: FastDVDnet | None = None

    def __post_init__(self) -> None:
        _check(
            self.architecture in MODEL_NAMES,
            "architecture",
            f"unknown architecture {self.architecture!r} (known: {', '.join(MODEL_NAMES)})",
        )


@dataclasses.dataclass(frozen=True)
class Train:
    profile: str = "quick"
    # The models to train, one train@<model> stage each. A flat key: DVC's foreach reads it.
    models: list[str] = dataclasses.field(default_factory=lambda: ["paper_cae", "dense_ae"])
    profiles: dict[str, Profile] = dataclasses.field(default_factory=lambda: {"quick": Profile()})
    variants: dict[str, Variant] = dataclasses.field(default_factory=dict)
    dense_patch: int = 8
    dense_stride: int = 4
    dense_hidden: int = 64
    dense_code: int = 32
    dncnn: DnCNN = dataclasses.field(default_factory=DnCNN)
    ffdnet: FFDNet = dataclasses.field(default_factory=FFDNet)
    drunet: DRUNet = dataclasses.field(default_factory=DRUNet)
    fastdvdnet: FastDVDnet = dataclasses.field(default_factory=FastDVDnet)

    def __post_init__(self) -> None:
        _check(
            self.profile in self.profiles,
            "profile",
            f"{self.profile!r} is not one of profiles ({', '.join(self.profiles)})",
        )
        for name in self.variants:
            _check(
                name not in MODEL_NAMES,
                f"variants.{name}",
                "must not reuse an architecture's name",
            )
        known = (*MODEL_NAMES, *self.variants)
        _check(bool(self.models), "models", "must name at least one model")
        for index, name in enumerate(self.models):
            _check(
                name in known,
                f"models[{index}]",
                f"unknown model {name!r} (known: {', '.join(known)})",
            )
            _check(name not in self.models[:index], f"models[{index}]", f"{name!r} is listed twice")
        for profile_name, profile in self.profiles.items():
            for name, own in profile.per_model.items():
                _check(
                    name in known,
                    f"profiles.{profile_name}.per_model.{name}",
                    f"unknown model {name!r} (known: {', '.join(known)})",
                )
                try:
                    dataclasses.replace(profile, **own.overrides())
                except ConfigError as error:
                    raise ConfigError(f"profiles.{profile_name}.per_model.{name}.{error}") from None
        for key in ("dense_patch", "dense_stride", "dense_hidden", "dense_code"):
            value = getattr(self, key)
            _check(value >= 1, key, f"must be >= 1, got {value}")
        _check(self.dense_stride <= self.dense_patch, "dense_stride", "must be <= dense_patch")
        for architecture in sorted(self.architectures):
            problem = ARCHITECTURES[architecture].size_rule(self, self.patch_size)
            _check(problem is None, f"profiles.{self.profile}.patch_size", str(problem))
        multiple = self.size_multiple
        _check(
            self.patch_size % multiple == 0,
            f"profiles.{self.profile}.patch_size",
            f"must be a multiple of {multiple} for the models' downsampling, got {self.patch_size}",
        )

    # The active profile's settings, which is what training uses.
    @property
    def active(self) -> Profile:
        return self.profiles[self.profile]

    @property
    def patch_size(self) -> int:
        return self.active.patch_size

    @property
    def batch_size(self) -> int:
        return self.active.batch_size

    @property
    def epochs(self) -> int:
        return self.active.epochs

    @property
    def steps_per_epoch(self) -> int:
        return self.active.steps_per_epoch

    @property
    def learning_rate(self) -> float:
        return self.active.learning_rate

    @property
    def early_stopping_patience(self) -> int:
        return self.active.early_stopping_patience

    def budget(self, name: str) -> Profile:
        """The active profile as model `name` trains on it: with its per_model settings."""
        own = self.active.per_model.get(name)
        return dataclasses.replace(self.active, **own.overrides()) if own else self.active

    def init_from(self, name: str) -> str | None:
        """Where model `name` of the active profile starts from (None: from scratch)."""
        own = self.active.per_model.get(name)
        return own.init_from if own else None

    def with_active(self, models: list[str] | None = None, **changes: Any) -> Train:
        """A copy that trains `models` (None: the same ones), whose active profile has
        `changes` applied (validated again)."""
        profile = dataclasses.replace(self.active, **changes)
        return dataclasses.replace(
            self,
            models=self.models if models is None else models,
            profiles={**self.profiles, self.profile: profile},
        )

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
        model with its budget's sampling: clips."""
        return self.window(name) > 1 or self.budget(name).sampling == "clips"

    @property
    def architectures(self) -> set[str]:
        """The architectures of the active profile's models."""
        return {self.spec(name).architecture for name in self.models}

    @property
    def size_multiple(self) -> int:
        """Patches and validation frames must be multiples of this for every active model."""
        specs = [self.spec(name) for name in self.models]
        return max(ARCHITECTURES[spec.architecture].side_multiple(spec) for spec in specs)


@dataclasses.dataclass(frozen=True)
class Evaluate:
    methods: list[str] = dataclasses.field(default_factory=lambda: list(EVALUATE_METHODS))
    blur_sigma: float = 1.0
    median_size: int = 3
    nlm_h_factor: float = 0.8
    # BM3D (seconds per frame) and BM4D (seconds per clip frame) run at these evaluation
    # levels only, BM3D on the first bm3d_max_images images of each set (None: every
    # image); [] runs them at every level.
    bm3d_levels: list[str] = dataclasses.field(default_factory=lambda: ["gaussian-25"])
    bm3d_max_images: int | None = None
    num_triptychs: int = 2

    def __post_init__(self) -> None:
        for index, name in enumerate(self.methods):
            _check(name in EVALUATE_METHODS, f"methods[{index}]", f"unknown method {name!r}")
        _check(self.blur_sigma > 0, "blur_sigma", "must be > 0")
        _check(self.median_size in (3, 5), "median_size", "must be 3 or 5 (float images)")
        _check(self.nlm_h_factor > 0, "nlm_h_factor", "must be > 0")
        _check(
            self.bm3d_max_images is None or self.bm3d_max_images >= 0,
            "bm3d_max_images",
            "must be >= 0 or null (every image)",
        )
        _check(self.num_triptychs >= 0, "num_triptychs", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class Tracking:
    experiment: str = "denoise"
    local_store: str = "mlflow"
    num_samples: int = 2
    system_metrics_seconds: float = 10.0  # training runs sample system use this often; 0: off

    def __post_init__(self) -> None:
        _check(bool(self.experiment.strip()), "experiment", "must not be empty")
        _check(self.system_metrics_seconds >= 0, "system_metrics_seconds", "must be >= 0")
        _check(
            bool(self.local_store) and not Path(self.local_store).is_absolute(),
            "local_store",
            f"must be a folder relative to the repository root, got {self.local_store!r}",
        )
        _check(self.num_samples >= 0, "num_samples", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class Services:
    """How long to wait for the tracking server, the Prefect API and the DVC remote."""

    timeout_seconds: float = 10.0  # one request: connect, or wait for an answer
    # Transient errors (5xx, reset, timeout) are retried, waiting at most this long in all;
    # connection refused, unknown hosts and refused credentials fail at once.
    retry_seconds: float = 30.0

    def __post_init__(self) -> None:
        _check(self.timeout_seconds > 0, "timeout_seconds", "must be > 0")
        _check(self.retry_seconds >= 0, "retry_seconds", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class Alerts:
    """Thresholds of the Prefect automations (flows/alerts.py)."""

    # A pipeline run that Prefect marked late and that has not started this long after.
    late_after_seconds: float = 900.0

    def __post_init__(self) -> None:
        _check(
            self.late_after_seconds >= 10,
            "late_after_seconds",
            "must be >= 10 (Prefect's shortest wait for a proactive trigger), "
            f"got {self.late_after_seconds:g}",
        )


@dataclasses.dataclass(frozen=True)
class Register:
    model_name: str = "denoise"
    video_model_name: str = "denoise-video"  # temporal models (train.window > 1)
    score_set: str = "test"
    promotion_margin_db: float = 0.05

    def __post_init__(self) -> None:
        _check(bool(self.model_name.strip()), "model_name", "must not be empty")
        _check(
            self.video_model_name.strip() not in ("", self.model_name),
            "video_model_name",
            "must not be empty nor model_name (image and video models compete apart)",
        )
        _check(bool(self.score_set.strip()), "score_set", "must not be empty")
        _check(self.promotion_margin_db >= 0, "promotion_margin_db", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class Apply:
    tile_size: int = 256
    overlap: int = 32
    batch_size: int = 8
    self_ensemble: bool = False
    precision: str = "float32"  # or bfloat16: models.at_precision

    def __post_init__(self) -> None:
        _check(
            self.precision in APPLY_PRECISIONS,
            "precision",
            f"must be one of {', '.join(APPLY_PRECISIONS)}, got {self.precision!r}",
        )
        _check(
            self.tile_size % 4 == 0 and self.tile_size >= 16,
            "tile_size",
            f"must be a multiple of 4 and >= 16 (paper_cae pools twice), got {self.tile_size}",
        )
        _check(
            self.overlap % 4 == 0 and 0 <= 2 * self.overlap <= self.tile_size,
            "overlap",
            f"must be a multiple of 4 between 0 and tile_size / 2, got {self.overlap}",
        )
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


@dataclasses.dataclass(frozen=True)
class Quality:
    """Targets of bench/quality.py (no stage reads them). Its sigmas are noise.evaluation's
    Gaussian levels and its headline level noise.validation_sigma."""

    bm3d_goal_db: float = 0.5  # the best model should beat BM3D by this much
    blind_gap_db: float = 0.3  # a blind model may trail its twin trained at the headline sigma
    fast_speedup: float = 20.0  # "fast": at most BM3D's time per frame / this ...
    stretch_speedup: float = 50.0  # ... and the stretch goal: / this

    def __post_init__(self) -> None:
        _check(self.blind_gap_db >= 0, "blind_gap_db", "must be >= 0")
        _check(self.fast_speedup >= 1, "fast_speedup", "must be >= 1")
        _check(
            self.stretch_speedup >= self.fast_speedup, "stretch_speedup", "must be >= fast_speedup"
        )


@dataclasses.dataclass(frozen=True)
class Params:
    seed: int = 0
    paths: Paths = dataclasses.field(default_factory=Paths)
    samples: Samples = dataclasses.field(default_factory=Samples)
    extract: Extract = dataclasses.field(default_factory=Extract)
    noise: Noise = dataclasses.field(default_factory=Noise)
    validate: Validate = dataclasses.field(default_factory=Validate)
    train: Train = dataclasses.field(default_factory=Train)
    evaluate: Evaluate = dataclasses.field(default_factory=Evaluate)
    tracking: Tracking = dataclasses.field(default_factory=Tracking)
    services: Services = dataclasses.field(default_factory=Services)
    alerts: Alerts = dataclasses.field(default_factory=Alerts)
    register: Register = dataclasses.field(default_factory=Register)
    apply: Apply = dataclasses.field(default_factory=Apply)
    quality: Quality = dataclasses.field(default_factory=Quality)
    # Named sets of params a profile cannot hold, {dotted key: value} each: `denoise recipe`.
    recipes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        # Training validates on whole frames; evaluation pads, so photograph_size is free.
        _check(
            self.extract.size % self.train.size_multiple == 0,
            "extract.size",
            f"must be divisible by {self.train.size_multiple} for the models of profile "
            f"{self.train.profile!r} (their downsampling), got {self.extract.size}",
        )
        for name in self.train.models:
            if not self.train.on_clips(name):
                continue
            _check(
                self.extract.clips.per_split > 0,
                "extract.clips.per_split",
                f"must be > 0: {name} trains on clips",
            )
            window = self.train.window(name)
            _check(
                self.extract.clips.length >= window,
                "extract.clips.length",
                f"must be at least {name}'s window of {window} frames, got "
                f"{self.extract.clips.length}",
            )
        if "dense_ae" in self.train.architectures:
            for key, size in (
                ("extract.size", self.extract.size),
                ("noise.photograph_size", self.noise.photograph_size),
            ):
                _check(
                    (size - self.train.dense_patch) % self.train.dense_stride == 0,
                    key,
                    f"{size} - train.dense_patch must be a multiple of train.dense_stride",
                )

    def training_noise(self, model: str) -> TrainNoise:
        """The noise a model trains on: its variant's own, or noise.train."""
        return self.train.spec(model).noise or self.noise.train

    def training_settings(self, model: str) -> dict[str, Any]:
        """Every setting of params.yaml that training `model` reads, resolved.

        The init stage writes it to paths.init/<model>.json, which train@<model> depends on:
        a change to one model's settings (its variant, its per_model budget) reruns that
        model's stage alone, and one to the profile every model's.
        """
        spec = self.train.spec(model)
        budget = dataclasses.asdict(self.train.budget(model))
        del budget["per_model"]
        architecture = getattr(spec, spec.architecture, None)
        settings: dict[str, Any] = {
            "seed": self.seed,
            "profile": self.train.profile,
            "architecture": spec.architecture,
            spec.architecture: dataclasses.asdict(architecture) if architecture else {},
            "noise": dataclasses.asdict(self.training_noise(model)),
            "validation_sigma": self.noise.validation_sigma,
            "budget": budget,
            "init_from": self.train.init_from(model),
        }
        if spec.architecture == "dense_ae":
            settings["dense_ae"] = {
                key: getattr(self.train, f"dense_{key}")
                for key in ("patch", "stride", "hidden", "code")
            }
        return settings


def _convert(value: Any, annotation: Any, key: str) -> Any:
    """Convert a parsed YAML value to the annotated type, or raise ConfigError naming the key."""
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _convert(value, inner, key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(annotation, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, inner = typing.get_args(annotation)
        return {str(name): _convert(item, inner, f"{key}.{name}") for name, item in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner,) = typing.get_args(annotation)
        return [_convert(item, inner, f"{key}[{index}]") for index, item in enumerate(value)]
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def _build(cls: Any, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {field.name for field in dataclasses.fields(cls)}
    for name in values:
        if name not in known:
            where = f"{prefix}.{name}" if prefix else str(name)
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
    kwargs = {
        name: _convert(value, hints[name], f"{prefix}.{name}" if prefix else name)
        for name, value in values.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"{prefix}.{error}" if prefix else str(error)) from None


def with_recipe(values: dict[str, Any], name: str) -> dict[str, Any]:
    """A params.yaml mapping with recipe `name`'s {dotted key: value} settings applied."""
    recipes = values.get("recipes") or {}
    if name not in recipes:
        raise ConfigError(f"recipes: no recipe {name!r} (known: {', '.join(recipes) or 'none'})")
    changed = copy.deepcopy(values)
    for dotted, value in recipes[name].items():
        *parents, leaf = str(dotted).split(".")
        node = changed
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"recipes.{name}.{dotted}: {part} is not a section")
        node[leaf] = value
    return changed


def params_from_dict(values: dict[str, Any]) -> Params:
    """Build Params from a parsed params.yaml mapping; missing keys take their defaults.
    Every recipe must give valid params too."""
    if not isinstance(values, dict):
        raise ConfigError("params: expected a mapping at the top level")
    params: Params = _build(Params, values, "")
    for name, settings in params.recipes.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"recipes.{name}: expected a mapping of dotted keys to values")
        try:
            _build(Params, {**with_recipe(values, name), "recipes": {}}, "")
        except ConfigError as error:
            raise ConfigError(f"recipes.{name}: {error}") from None
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raise ConfigError naming the file and key on bad input."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such parameters file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    try:
        return params_from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def params_to_dict(params: Params) -> dict[str, Any]:
    """The nested mapping params.yaml would hold for these params."""
    return dataclasses.asdict(params)
