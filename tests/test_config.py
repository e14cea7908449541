from __future__ import annotations

from pathlib import Path

import pytest

from denoise.core.config import load_params, params_from_dict
from denoise.core.errors import ConfigError

PROJECT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_project_params_load() -> None:
    params = load_params(PROJECT_PARAMS)
    assert params.extract.size == 200
    assert params.noise.evaluation.levels()[:3] == [
        ("gaussian", 15.0),
        ("gaussian", 25.0),
        ("gaussian", 50.0),
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"extract": {"sizee": 100}}, "extract.sizee: unknown key"),
        ({"colour": 1}, "colour: unknown key"),
        (
            {"noise": {"evaluation": {"gaussian": [25, -5]}}},
            "noise.evaluation.gaussian[1]: sigma must be >= 0, got -5",
        ),
        ({"noise": {"train": {"sigma": -1}}}, "noise.train.sigma: must be >= 0"),
        ({"extract": {"size": 202}}, "extract.size: must be divisible by 4 for the models of"),
        ({"extract": {"size": "big"}}, "extract.size: expected an integer, got 'big'"),
        (
            {"train": {"models": ["resnet"]}},
            "train.models[0]: unknown model 'resnet'",
        ),
        ({"train": {"profile": "huge"}}, "train.profile: 'huge' is not one of profiles"),
        (
            {"train": {"variants": {"dncnn": {"architecture": "dncnn"}}}},
            "train.variants.dncnn: must not reuse an architecture's name",
        ),
        (
            {"train": {"variants": {"big": {"architecture": "resnet"}}}},
            "train.variants.big.architecture: unknown architecture 'resnet'",
        ),
        (
            {"train": {"profiles": {"quick": {"schedule": "linear"}}}},
            "train.profiles.quick.schedule: must be one of constant, cosine",
        ),
        (
            {"train": {"profiles": {"quick": {"precision": "float8"}}}},
            "train.profiles.quick.precision: must be one of",
        ),
        (
            {"train": {"profiles": {"quick": {"sampling": "videos"}}}},
            "train.profiles.quick.sampling: must be one of frames, sources",
        ),
        (
            {"extract": {"train_only": [""]}},
            "extract.train_only[0]: must name a source under paths.raw",
        ),
        ({"seed": True}, "seed: expected an integer"),
        (
            {"quality": {"fast_speedup": 30, "stretch_speedup": 20}},
            "quality.stretch_speedup: must be >= fast_speedup",
        ),
    ],
)
def test_bad_values_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        params_from_dict(values)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such parameters file"):
        load_params(tmp_path / "absent.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("extract: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(broken)
