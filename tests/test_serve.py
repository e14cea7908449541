"""The champion through a real `mlflow server`: pyfunc load, `mlflow models serve`, `apply`.

One tracking server (SQLite, proxied artifacts) on loopback for the module; an untrained
paper_cae is logged with log_denoiser, registered, and given the champion alias.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import mlflow
import numpy as np
import pytest
import requests
from conftest import PROJECT_ROOT
from mlflow import MlflowClient
from servers import start_mlflow_server, start_model_server, stop
from typer.testing import CliRunner

from denoise.cli import app
from denoise.core.config import default_params, load_params
from denoise.core.metrics import psnr
from denoise.models.build import build_model
from denoise.models.precision import at_precision
from denoise.serving.pyfunc import KERAS_ARTIFACT, DenoiserModel
from denoise.serving.tiling import denoise_batch
from denoise.stages.register import score_model
from denoise.tracking.models import log_denoiser

pytestmark = pytest.mark.slow

PARAMS_FILE = PROJECT_ROOT / "params.yaml"
MODEL_NAME = load_params(PARAMS_FILE).register.model_name  # what `apply` looks up by default


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a live `mlflow server`; MLFLOW_TRACKING_URI points at it for the module."""
    url, process = start_mlflow_server(tmp_path_factory.mktemp("tracking-server"))
    previous = mlflow.get_tracking_uri()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", url)
            mlflow.set_tracking_uri(url)
            yield url
            mlflow.set_tracking_uri(previous)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def champion(tracking_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """models:/<name>@champion of a paper_cae logged with 64 px tiles, so tiling is exercised."""
    path = tmp_path_factory.mktemp("model") / "paper_cae.keras"
    build_model("paper_cae", default_params().train).save(path)
    client = MlflowClient(tracking_server)
    experiment_id = client.create_experiment("serve-test")
    with mlflow.start_run(experiment_id=experiment_id):
        info = log_denoiser(path, name="model", tile_size=64, overlap=16)
    version = mlflow.register_model(info.model_uri, MODEL_NAME)
    client.set_registered_model_alias(MODEL_NAME, "champion", version.version)
    return f"models:/{MODEL_NAME}@champion"


def _noisy(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).random((1, height, width, 3), dtype=np.float32)


def test_champion_loads_as_pyfunc_and_keeps_any_shape(champion: str) -> None:
    noisy = _noisy(150, 97)  # neither side a multiple of 4, both larger than a 64 px tile
    denoised = mlflow.pyfunc.load_model(champion).predict(noisy)
    assert denoised.shape == noisy.shape and denoised.dtype == np.float32
    assert denoised.min() >= 0.0 and denoised.max() <= 1.0


def test_champion_self_ensembles_when_its_config_says_so(champion: str) -> None:
    loaded = mlflow.pyfunc.load_model(champion, model_config={"self_ensemble": True})
    keras_model = loaded.unwrap_python_model().model
    noisy = _noisy(70, 90)
    expected = denoise_batch(
        keras_model, noisy, tile_size=64, overlap=16, ensemble=True, batch_size=8
    )
    np.testing.assert_allclose(loaded.predict(noisy), expected, atol=1e-6)


def test_register_scores_a_model_with_or_without_its_self_ensemble(champion: str) -> None:
    """The register stage scores through score_model, as params.apply.self_ensemble serves."""
    clean = _noisy(48, 64)
    noisy = clean + np.random.default_rng(1).normal(0, 0.1, clean.shape).astype(np.float32)
    loaded = mlflow.pyfunc.load_model(champion)
    keras_model = loaded.unwrap_python_model().model
    for ensemble in (False, True):
        denoised = denoise_batch(
            keras_model, noisy, tile_size=64, overlap=16, ensemble=ensemble, batch_size=8
        )
        expected = psnr(clean[0], np.clip(denoised[0], 0.0, 1.0))
        score = score_model(champion, clean, noisy, self_ensemble=ensemble)
        assert score == pytest.approx(expected, abs=1e-4)
    half = at_precision(keras_model, "bfloat16")
    denoised = denoise_batch(half, noisy, tile_size=64, overlap=16, batch_size=8)
    expected = psnr(clean[0], np.clip(denoised[0], 0.0, 1.0))
    score = score_model(champion, clean, noisy, precision="bfloat16")
    assert score == pytest.approx(expected, abs=1e-9)  # the same computation
    # An untrained paper_cae's output is nearly constant: bf16 moves its score by about 1e-5 dB.
    assert score != score_model(champion, clean, noisy)


def test_register_scores_with_the_ensemble_a_model_logged_before_the_option(
    champion: str, tmp_path: Path
) -> None:
    """A version logged without self_ensemble in its model_config (as versions logged before
    the option existed are) is scored with the ensemble all the same: MLflow would drop the
    override key."""
    path = tmp_path / "paper_cae.keras"
    build_model("paper_cae", default_params().train).save(path)
    mlflow.set_experiment("serve-test-old-config")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DenoiserModel(),
            artifacts={KERAS_ARTIFACT: str(path)},
            model_config={"tile_size": 64, "overlap": 16, "batch_size": 8},
            pip_requirements=["mlflow"],  # not served here; skips requirement inference
        )
    clean = _noisy(48, 64)
    noisy = clean + np.random.default_rng(1).normal(0, 0.1, clean.shape).astype(np.float32)
    keras_model = mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model().model
    denoised = denoise_batch(
        keras_model, noisy, tile_size=64, overlap=16, ensemble=True, batch_size=8
    )
    plain = denoise_batch(
        keras_model, noisy, tile_size=64, overlap=16, ensemble=False, batch_size=8
    )
    expected = psnr(clean[0], np.clip(denoised[0], 0.0, 1.0))
    assert expected != pytest.approx(psnr(clean[0], np.clip(plain[0], 0.0, 1.0)), abs=1e-4)
    score = score_model(info.model_uri, clean, noisy, self_ensemble=True)
    assert score == pytest.approx(expected, abs=1e-4)
    loaded = mlflow.pyfunc.load_model(info.model_uri)  # no precision logged: float32
    assert loaded.unwrap_python_model().model is not None
    assert {layer.dtype_policy.name for layer in loaded.unwrap_python_model().model.layers} == {
        "float32"
    }


def test_served_champion_answers_invocations(
    champion: str, tracking_server: str, tmp_path: Path
) -> None:
    url, process = start_model_server(champion, tracking_server, tmp_path / "serve.log")
    try:
        noisy = _noisy(75, 61)
        response = requests.post(f"{url}/invocations", json={"inputs": noisy.tolist()}, timeout=120)
        assert response.status_code == 200, response.text[:500]
        denoised = np.asarray(response.json()["predictions"], dtype=np.float32)
        assert denoised.shape == noisy.shape
        assert denoised.min() >= 0.0 and denoised.max() <= 1.0
    finally:
        stop(process)


def test_apply_uses_the_champion_by_default(champion: str, tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.round(_noisy(101, 203)[0] * 255).astype(np.uint8))
    result = CliRunner().invoke(
        app, ["apply", str(image), "-o", str(tmp_path / "out"), "--params", str(PARAMS_FILE)]
    )
    assert result.exit_code == 0, result.stderr
    assert f"model: {champion}" in result.stdout
    assert cv2.imread(str(tmp_path / "out" / "frame.png")).shape == (101, 203, 3)


def test_apply_names_a_missing_alias(tracking_server: str, tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    result = CliRunner().invoke(
        app,
        ["apply", str(image), "-o", str(tmp_path / "out"), "--model", "models:/absent@champion"],
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(
        f"error: no model registered as absent@champion at {tracking_server}: run the pipeline"
    )
