"""Starting weights: init_from resolved by the init stage, a warm start that loads them exactly,
and one clear line when they do not fit the model."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import write_params

from denoise.core.architecture_settings.drunet import DRUNet
from denoise.core.config import Params
from denoise.core.errors import ModelError
from denoise.core.locations import init_file
from denoise.core.train_config import ModelBudget, Variant
from denoise.data.sources import file_sha256
from denoise.models.build import build_model, load_model, start_from
from denoise.stages.init import run as run_init
from denoise.stages.init import unchanged
from denoise.tracking import store
from denoise.training.settings import training_settings, with_active

TINY_DRUNET = Variant(architecture="drunet", settings=DRUNet(widths=[4, 8], blocks_per_level=1))


def _with_model(params: Params, init_from: str | None) -> Params:
    """params training one tiny DRUNet (`small`) that starts from init_from."""
    train = dataclasses.replace(
        params.train, variants={**params.train.variants, "small": TINY_DRUNET}
    )
    train = with_active(train, models=["small"], per_model={"small": ModelBudget(init_from)})
    return dataclasses.replace(params, train=train)


def _saved(model: keras.Model, path: Path) -> Path:
    model.save(path)
    return path


def test_a_warm_start_loads_the_source_weights_exactly(params: Params, tmp_path: Path) -> None:
    keras.utils.set_random_seed(1)
    source = build_model("small", _with_model(params, None).train)
    path = _saved(source, tmp_path / "source.keras")
    keras.utils.set_random_seed(2)
    target = build_model("small", _with_model(params, None).train)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(target.get_weights(), source.get_weights(), strict=True)
    )
    start_from(target, load_model(path), "small", str(path))
    for mine, theirs in zip(target.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    batch = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    np.testing.assert_array_equal(
        np.asarray(target.predict_on_batch(batch)), np.asarray(source.predict_on_batch(batch))
    )


def test_the_init_stage_copies_the_source_byte_for_byte(params: Params, tmp_path: Path) -> None:
    path = _saved(build_model("small", _with_model(params, None).train), tmp_path / "start.keras")
    configured = _with_model(params, str(path))
    summary = run_init(configured)
    copied = Path(configured.paths.init) / "small.keras"
    assert copied.read_bytes() == path.read_bytes()
    recorded = json.loads(init_file(configured, "small").read_text())
    assert (
        recorded["init"]
        == summary.sources["small"]
        == {
            "init_from": str(path),
            "resolved": str(path),
            "sha256": file_sha256(path),
        }
    )
    assert recorded["settings"] == training_settings(configured, "small")


def test_models_without_init_from_start_from_scratch(params: Params) -> None:
    summary = run_init(params)
    assert summary.sources == {}
    for name in params.train.models:
        recorded = json.loads(init_file(params, name).read_text())
        assert recorded == {"settings": training_settings(params, name), "init": None}
        assert not init_file(params, name, ".keras").exists()


def test_each_model_s_settings_file_changes_with_its_own_settings_alone(params: Params) -> None:
    """What train@<model> depends on: one model's budget or variant changes its file only."""
    first, second = params.train.models[:2]
    before = {name: training_settings(params, name) for name in params.train.models}
    own = dataclasses.replace(params.train.active, per_model={first: ModelBudget(epochs=7)})
    changed = dataclasses.replace(
        params, train=dataclasses.replace(params.train, profiles={params.train.profile: own})
    )
    assert training_settings(changed, first)["budget"]["epochs"] == 7
    assert training_settings(changed, second) == before[second]
    budget = dataclasses.replace(params.train.active, learning_rate=0.01)
    shared = dataclasses.replace(
        params, train=dataclasses.replace(params.train, profiles={params.train.profile: budget})
    )
    assert all(training_settings(shared, name) != before[name] for name in params.train.models)


def test_a_source_of_another_architecture_is_one_line_naming_both(
    params: Params, tmp_path: Path
) -> None:
    path = _saved(build_model("paper_cae", params.train), tmp_path / "cae.keras")
    with pytest.raises(ModelError, match="is a paper_cae of 29,507 parameters, small a drunet"):
        start_from(
            build_model("small", _with_model(params, None).train),
            load_model(path),
            "small",
            str(path),
        )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "denoise",
            "init",
            "--params",
            str(write_params(_with_model(params, str(path)), tmp_path / "params.yaml")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "paper_cae" in errors[0] and "drunet" in errors[0]
    assert not (Path(params.paths.init)).exists(), "nothing written on a mismatch"


def test_init_from_a_missing_file_is_a_config_error(params: Params, tmp_path: Path) -> None:
    from denoise.core.errors import ConfigError

    with pytest.raises(ConfigError, match="no such file"):
        run_init(_with_model(params, str(tmp_path / "absent.keras")))


def test_champion_resolves_to_the_registered_file_or_else_the_shipped_model(
    params: Params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """init_from: champion is the champion's own .keras bytes and version when it is of the
    model's architecture; with no champion, or one of another architecture, the shipped model."""
    import mlflow

    from denoise.models.pretrained import PRETRAINED_MODEL
    from denoise.serving.load import CHAMPION
    from denoise.tracking.models import log_denoiser

    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        name = params.register.model_name
        shipped = _with_model(params, "champion")
        shipped = dataclasses.replace(
            shipped,
            train=with_active(
                shipped.train,
                models=["drunet_light"],
                per_model={"drunet_light": ModelBudget("champion")},
            ),
        )
        assert run_init(shipped).sources["drunet_light"]["resolved"].startswith("pretrained")
        copied = Path(shipped.paths.init) / "drunet_light.keras"
        assert copied.read_bytes() == PRETRAINED_MODEL.read_bytes()
        assert unchanged(shipped) == run_init(shipped), "still no champion: nothing to do"

        keras.utils.set_random_seed(3)
        champion_file = _saved(build_model("drunet_light", params.train), tmp_path / "c.keras")
        with mlflow.start_run():
            log_denoiser(champion_file, name="model", params=params, registered_model_name=name)
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(name, CHAMPION, "1")
        assert store.alias_version(uri, name, CHAMPION) == "1"
        assert unchanged(shipped) is None, "a new champion is a change"
        resolved = run_init(shipped).sources["drunet_light"]["resolved"]
        assert resolved == f"models:/{name}@{CHAMPION} (version 1)"
        assert copied.read_bytes() == champion_file.read_bytes()
        assert unchanged(shipped) == run_init(shipped)
        copied.write_bytes(PRETRAINED_MODEL.read_bytes())
        assert unchanged(shipped) is None, "a file that changed is written again"
        run_init(shipped)
        assert copied.read_bytes() == champion_file.read_bytes()

        paper = _saved(build_model("paper_cae", params.train), tmp_path / "p.keras")
        with mlflow.start_run():
            log_denoiser(paper, name="model", params=params, registered_model_name=name)
        client.set_registered_model_alias(name, CHAMPION, "2")
        assert run_init(shipped).sources["drunet_light"]["resolved"].startswith("pretrained")
    finally:
        mlflow.set_tracking_uri(previous)


def test_champion_with_a_tracking_server_that_does_not_answer_is_an_error_not_the_shipped_model(
    params: Params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servers import free_port

    from denoise.stages.init import resolve

    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    shipped = with_active(
        params.train, models=["drunet_light"], per_model={"drunet_light": ModelBudget("champion")}
    )
    with pytest.raises(ModelError, match=f"no MLflow tracking server answers at {url}"):
        resolve("drunet_light", dataclasses.replace(params, train=shipped), tmp_path)
