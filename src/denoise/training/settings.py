"""What each model trains with: its budget (the active profile with its per_model settings),
its starting weights, its training noise, and every setting the init stage records for it.

Always ask per model: a per_model entry may change a model's epochs, steps per epoch, learning
rate, warm-up, patience and clipping, so the profile's own values are not every model's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from denoise.core.config import Params
from denoise.core.train_config import Profile, Train, TrainNoise


def model_budget(train: Train, name: str) -> Profile:
    """The active profile as model `name` trains on it: with its per_model settings."""
    own = train.active.per_model.get(name)
    return dataclasses.replace(train.active, **own.overrides()) if own else train.active


def model_init_from(train: Train, name: str) -> str | None:
    """Where model `name` of the active profile starts from (None: from scratch)."""
    own = train.active.per_model.get(name)
    return own.init_from if own else None


def with_active(train: Train, models: list[str] | None = None, **changes: Any) -> Train:
    """A copy of `train` that trains `models` (None: the same ones), whose active profile has
    `changes` applied (validated again)."""
    profile = dataclasses.replace(train.active, **changes)
    return dataclasses.replace(
        train,
        models=train.models if models is None else models,
        profiles={**train.profiles, train.profile: profile},
    )


def training_noise(params: Params, name: str) -> TrainNoise:
    """The noise model `name` trains on: noise.train with its variant's own keys applied."""
    own = params.train.spec(name).noise
    return dataclasses.replace(params.noise.train, **own.overrides()) if own else params.noise.train


def training_settings(params: Params, name: str) -> dict[str, Any]:
    """Every setting of params.yaml that training model `name` reads, resolved.

    The init stage writes it to paths.init/<model>.json, which train@<model> depends on:
    a change to one model's settings (its variant, its per_model budget) reruns that
    model's stage alone, and one to the profile every model's.
    """
    train = params.train
    spec = train.spec(name)
    own_budget = dataclasses.asdict(model_budget(train, name))
    del own_budget["per_model"]
    settings: dict[str, Any] = {
        "seed": params.seed,
        "profile": train.profile,
        "architecture": spec.architecture,
        spec.architecture: dataclasses.asdict(spec.settings) if spec.settings else {},
        "noise": dataclasses.asdict(training_noise(params, name)),
        "validation_sigma": params.noise.validation_sigma,
        "budget": own_budget,
        "init_from": model_init_from(train, name),
    }
    if train.supervision_of(name) == "noisy":  # only then, so clean models' files keep theirs
        settings["supervision"] = "noisy"
        settings["without_clean"] = dataclasses.asdict(train.without_clean)
    return settings
