from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from conftest import project_values

from denoise.core.config import Params, default_params, load_params, params_from_dict
from denoise.core.errors import ConfigError
from denoise.core.train_config import ModelBudget, Variant, VariantNoise

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
            "noise.evaluation.gaussian[1]: must be >= 0, got -5",
        ),
        ({"noise": {"train": {"sigma": -1}}}, "noise.train.sigma: must be >= 0"),
        ({"extract": {"size": 202}}, "extract.size: must be divisible by 8 for the models of"),
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
            "train.variants.big.architecture: must be one of paper_cae, dense_ae, dncnn, ffdnet, "
            "drunet, fastdvdnet, got 'resnet'",
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
            "extract.train_only[0]: must be a name of letters, digits, _ and -",
        ),
        ({"extract": {"train_only": ["../photos"]}}, "extract.train_only[0]: must be a name"),
        ({"seed": True}, "seed: expected an integer"),
        (
            {"samples": {"dead_leaves": {"radius_max": 0.5}}},
            "samples.dead_leaves.radius_max: must be > radius_min",
        ),
        (
            {"samples": {"dead_leaves": {"colours_from": ["dead_leaves"]}}},
            "samples.dead_leaves.colours_from[0]: must be one of photos, wallpapers, jxl_photos",
        ),
        ({"noise": {"held_out": {"crops": -1}}}, "noise.held_out.crops: must be >= 0"),
        ({"extract": {"size": 64.0}}, "extract.size: expected an integer, got 64.0"),
        (
            {"train": {"profiles": {"quick": {"epochs": 0}}}},
            "train.profiles.quick.epochs: must be >= 1",
        ),
        (
            {"train": {"profiles": {"quick": {"patch_size": 256}}}},
            "train.profiles.quick.patch_size: 256 is larger than the frames (extract.size 200)",
        ),
        (
            {"train": {"profiles": {"quick": {"per_model": {"drunet_light": {"epochs": 0}}}}}},
            "train.profiles.quick.per_model.drunet_light.epochs: must be >= 1",
        ),
        (
            {"train": {"variants": {"dncnn_s25": {"noise": {"sigma_min": 60}}}}},
            "train.variants.dncnn_s25.noise.sigma_min: must be <= sigma_max",
        ),
        ({"apply": {"overlap": 200}}, "apply.overlap: must be at most tile_size / 2, got 200"),
        (
            {"quality": {"fast_speedup": 30, "stretch_speedup": 20}},
            "quality.stretch_speedup: must be >= fast_speedup",
        ),
    ],
)
def test_bad_values_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        params_from_dict(project_values(values))


@pytest.mark.parametrize("name", ["../../x", "x;touch PWNED;", "a b", ".hidden", ""])
def test_model_variant_and_source_names_are_plain_names(name: str) -> None:
    """A name becomes a file name and a DVC stage name (`train@NAME`, run through a shell):
    one that is not plain fails validation in one line naming it."""
    variants = {name: {"architecture": "dncnn"}}
    with pytest.raises(ConfigError, match=r"^train\.variants: must be a name of letters") as error:
        params_from_dict(project_values({"train": {"variants": variants}}))
    assert str(error.value) == (
        f"train.variants: must be a name of letters, digits, _ and - only, got {name!r}"
    )
    with pytest.raises(ConfigError, match=r"^register\.model_name: must be a name of letters"):
        params_from_dict(project_values({"register": {"model_name": name}}))
    with pytest.raises(ConfigError, match=r"^train\.models\[0\]: must be a name of letters"):
        params_from_dict(project_values({"train": {"models": [name]}}))
    with pytest.raises(ConfigError, match=r"^samples\.videos\[0\]: must be a name"):
        params_from_dict(project_values({"samples": {"videos": [name]}}))
    per_model = {name: {"epochs": 2}}
    with pytest.raises(ConfigError, match=r"^train\.profiles\.quick\.per_model: must be a name"):
        params_from_dict(
            project_values({"train": {"profiles": {"quick": {"per_model": per_model}}}})
        )


def test_a_source_may_be_a_file_name() -> None:
    values = project_values({"extract": {"train_only": ["box.mp4", "photos"]}})
    assert params_from_dict(values).extract.train_only == ["box.mp4", "photos"]


def test_every_key_must_be_set() -> None:
    values = project_values({})
    del values["extract"]["split"]["gap_seconds"]
    with pytest.raises(ConfigError, match=r"^extract\.split\.gap_seconds: missing"):
        params_from_dict(values)


def test_params_yaml_is_the_only_home_of_defaults() -> None:
    """No section declares a default value: only a per-model budget, a variant's noise and
    sections, and a profile's per_model may be left out, and then mean "not set"."""
    not_set = {ModelBudget, VariantNoise, Variant}
    seen: set[type] = set()

    def visit(section: type) -> None:
        if section in seen:
            return
        seen.add(section)
        hints = typing.get_type_hints(section)
        for field in dataclasses.fields(section):
            has_default = field.default is not dataclasses.MISSING
            has_default |= field.default_factory is not dataclasses.MISSING
            if section not in not_set and (section.__name__, field.name) != (
                "Profile",
                "per_model",
            ):
                assert not has_default, f"{section.__name__}.{field.name} has a default in code"
            if has_default and field.default is not dataclasses.MISSING:
                assert field.default is None, f"{section.__name__}.{field.name}"
            for inner in _dataclasses_in(hints[field.name]):
                visit(inner)

    visit(Params)
    assert len(seen) > 20


def _dataclasses_in(annotation: Any) -> list[type]:
    found = [annotation] if dataclasses.is_dataclass(annotation) else []
    for argument in typing.get_args(annotation):
        found += _dataclasses_in(argument)
    return found


def test_the_package_ships_the_project_params() -> None:
    assert default_params() == load_params(PROJECT_PARAMS)


def test_a_changed_copy_is_validated_again() -> None:
    params = load_params(PROJECT_PARAMS)
    with pytest.raises(ConfigError, match=r"^epochs: must be >= 1, got 0$"):
        dataclasses.replace(params.train.active, epochs=0)
    with pytest.raises(ConfigError, match=r"^extract\.size: must be divisible by 8"):
        dataclasses.replace(params, extract=dataclasses.replace(params.extract, size=204))


def test_duplicate_keys_and_an_empty_file_are_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    text = PROJECT_PARAMS.read_text()
    path.write_text(text.replace("  size: 200", "  size: 200\n  size: 96", 1))
    with pytest.raises(ConfigError, match=r"duplicate key 'size'") as caught:
        load_params(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    nested = text.replace("seed: 0\n", "seed: 0\nseed: 1\n", 1)
    path.write_text(nested)
    with pytest.raises(ConfigError, match=r"line \d+: duplicate key 'seed'"):
        load_params(path)
    for empty in ("", "\n# only a comment\n"):
        path.write_text(empty)
        with pytest.raises(ConfigError, match=r"params\.yaml: empty"):
            load_params(path)


def test_numbers_without_a_dot_are_read_as_dvc_writes_them(tmp_path: Path) -> None:
    """`dvc exp run -S ...learning_rate=0.00005` writes 5e-05, a float in YAML 1.2 (DVC's),
    a string in PyYAML's YAML 1.1 rules."""
    text = PROJECT_PARAMS.read_text()
    assert "      learning_rate: 0.001\n" in text
    path = tmp_path / "params.yaml"
    for written, value in (("5e-05", 5e-05), ("1E-3", 1e-3), ("+2e-4", 2e-4)):
        path.write_text(
            text.replace("      learning_rate: 0.001\n", f"      learning_rate: {written}\n", 1)
        )
        params = load_params(path)
        assert params.train.profiles[params.train.profile].learning_rate == value
    path.write_text(text.replace("seed: 0\n", "seed: 5e1\n", 1))
    with pytest.raises(ConfigError, match="seed"):  # an integer field takes no float
        load_params(path)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such parameters file"):
        load_params(tmp_path / "absent.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("extract: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(broken)


def _with_path(params: Params, **paths: str) -> Params:
    return dataclasses.replace(params, paths=dataclasses.replace(params.paths, **paths))


def test_a_path_under_a_regular_file_fails_in_preflight_naming_the_key_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any stage deletes an output, not in the stage that first writes there."""
    import subprocess
    import sys
    import time

    from conftest import write_params

    from denoise.stages.preflight import check_paths

    monkeypatch.chdir(tmp_path)  # the paths are relative to the project, as users write them
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "box.mp4").write_bytes(b"a video")
    (tmp_path / "notes.txt").write_text("a file\n")
    params = default_params()
    check_paths(params)  # the project's own paths, under folders or not made yet: passed
    for key, path, above in [
        ("frames", "data/raw/box.mp4/frames", "data/raw/box.mp4"),
        ("models", "notes.txt/models", "notes.txt"),  # the path's parent is the file
        ("metrics", "notes.txt/a/b/metrics.json", "notes.txt"),
        ("checkpoints", str(tmp_path / "notes.txt" / "checkpoints"), str(tmp_path / "notes.txt")),
    ]:
        with pytest.raises(ConfigError) as caught:
            check_paths(_with_path(params, **{key: path}))
        assert str(caught.value) == (
            f"params.yaml: paths.{key}: {path} lies under {above}, a regular file, where no "
            "folder can be made; choose a path under a folder"
        )
    # What the user sees: `denoise preflight` (the first stage, and `denoise run`'s checks).
    write_params(_with_path(params, frames="data/raw/box.mp4/frames"), tmp_path / "params.yaml")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "denoise", "preflight"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        "error: params.yaml: paths.frames: data/raw/box.mp4/frames lies under data/raw/box.mp4, "
        "a regular file, where no folder can be made; choose a path under a folder"
    ]
    # About 3 s unloaded (docs/reliability.md): interpreter and CLI start, no MLflow or Keras.
    assert seconds < 60, seconds
    print(f"denoise preflight refused the path in {seconds:.1f} s")
