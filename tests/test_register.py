"""The registry's aliases over two register runs, against a real MLflow store (SQLite): each
version is decided once, and `challenger` is the best non-champion that passed the gate."""

from __future__ import annotations

import contextlib
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from denoise.core.config import Params
from denoise.serving.load import CHALLENGER, CHAMPION
from denoise.stages.register import _register
from denoise.tracking.aliases import best_challenger
from denoise.tracking.models import log_model_file

NAME = "denoise-aliases"
SCORED_ON = "test/gaussian-25"


def _blend_model(path: Path, weight: float) -> Path:
    """A denoiser of known quality: (1 - weight) * noisy + weight * its 3x3 box blur (on the
    test's ramp, PSNR rises with weight up to about 0.6: zero padding darkens the border)."""
    noisy = keras.Input((None, None, 3))
    blur = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)
    blurred = blur(noisy)
    kept = keras.layers.Rescaling(1.0 - weight)(noisy)
    denoised = keras.layers.Add()([kept, keras.layers.Rescaling(weight)(blurred)])
    model = keras.Model(noisy, denoised)
    blur.set_weights([np.full((3, 3, 3, 1), 1.0 / 9.0, np.float32)])
    model.save(path)
    return path


def _logged_runs(params: Params, weights: dict[str, float], folder: Path) -> dict[str, str]:
    """Each model logged in a run of its own, its artifacts under folder."""
    client = MlflowClient()
    name = f"aliases-{folder.name}"
    experiment = client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(name, artifact_location=(folder / "mlruns").as_uri())
    )
    runs = {}
    for model, weight in weights.items():
        with mlflow.start_run(experiment_id=experiment_id, run_name=model) as run:
            log_model_file(params, _blend_model(folder / f"{model}.keras", weight), 1)
        runs[model] = run.info.run_id
    return runs


def _aliases(client: MlflowClient) -> dict[str, str]:
    found = {}
    for alias in (CHAMPION, CHALLENGER):
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            found[alias] = client.get_model_version_by_alias(NAME, alias).tags["denoise.model"]
    return found


@pytest.mark.slow
def test_register_twice_decides_each_version_once_and_points_challenger_at_the_best(
    params: Params, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.2, 0.8, 32, dtype=np.float32)
    clean = np.broadcast_to(ramp[None, :, None, None], (2, 32, 32, 3)).copy()
    noisy = clean + rng.normal(0.0, 25 / 255, clean.shape).astype(np.float32)
    client = MlflowClient()

    first = _logged_runs(params, {"best": 0.6, "middle": 0.4, "worst": 0.2}, tmp_path)
    eligible = dict.fromkeys(first, True)
    decided = _register(params, NAME, first, eligible, clean, noisy, SCORED_ON)
    assert {entry.model: entry.alias for entry in decided} == {
        "best": CHAMPION,
        "middle": CHALLENGER,
        "worst": CHALLENGER,
    }
    # The worst candidate is scored last; the alias stays on the better one.
    assert _aliases(client) == {CHAMPION: "best", CHALLENGER: "middle"}
    assert {entry.model: entry.holds for entry in decided} == {
        "best": CHAMPION,
        "middle": CHALLENGER,
        "worst": None,
    }
    worst = next(
        v for v in client.search_model_versions(f"name='{NAME}'") if v.run_id == first["worst"]
    )
    assert (
        worst.description.startswith("worst: ")
        and "dB PSNR on test/gaussian-25" in worst.description
    )

    # A second run: the same three training runs (DVC kept their models) and two new ones, one
    # between the champion and the challenger, one as good as the champion but failing the gate.
    second = {**first, **_logged_runs(params, {"closer": 0.5, "ungated": 0.6}, tmp_path)}
    eligible = {**dict.fromkeys(second, True), "ungated": False}
    decided = _register(params, NAME, second, eligible, clean, noisy, SCORED_ON)
    by_model = {entry.model: entry for entry in decided}
    assert by_model["ungated"].alias is None and by_model["ungated"].holds is None
    assert by_model["best"].reason == "already the champion"
    assert by_model["worst"].reason.startswith("decided when registered: ")
    assert by_model["worst"].earlier and not by_model["closer"].earlier
    assert _aliases(client) == {CHAMPION: "best", CHALLENGER: "closer"}
    again = next(
        v for v in client.search_model_versions(f"name='{NAME}'") if v.run_id == first["worst"]
    )
    assert again.tags == worst.tags  # decided once: the second run rewrote nothing
    assert len(client.search_model_versions(f"name='{NAME}'")) == 5


class _Version:
    def __init__(self, version: int, decision: str, score: float, scored_on: str = SCORED_ON):
        self.version = version
        self.tags = {
            "denoise.decision": decision,
            "denoise.score_psnr": str(score),
            "denoise.score_set": scored_on,
        }


def test_the_challenger_is_none_without_a_gated_non_champion_on_the_same_set() -> None:
    versions = [
        _Version(1, CHAMPION, 30.0),
        _Version(2, "rejected", 35.0),
        _Version(3, CHALLENGER, 31.0, scored_on="photographs/gaussian-25"),
    ]
    assert best_challenger(versions, "1", SCORED_ON) is None
    # A former champion that lost its alias passed the gate: it may be the challenger.
    assert best_challenger(versions, "4", SCORED_ON).version == 1
