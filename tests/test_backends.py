"""A logged model serves from an environment whatever Keras backend trained it.

Two real environments are built beside this one: one without JAX (TensorFlow only) and one
without TensorFlow (JAX only). Each is a virtual environment whose site-packages links this
one's packages except the dropped backend's, so `import jax` (or `import tensorflow`) fails
there as on a machine without it. A model trained and logged in one is served by
`mlflow models serve --env-manager local` from the other, and must answer /invocations with
what the training environment's own pyfunc predicts. The server is started by
infra/serving/serve.sh, the serving image's entry point (no Docker here to build the image).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import PROJECT_ROOT
from servers import free_port, start, stop, wait_http

BACKEND_PACKAGES = {"tensorflow": ("tensorflow", "tf_keras"), "jax": ("jax", "jaxlib")}
SERVE = PROJECT_ROOT / "infra" / "serving" / "serve.sh"  # the serving image's entry point

TRAIN_AND_LOG = """
import json, sys
from pathlib import Path

import keras
import mlflow
import numpy as np

from denoise.core.config import load_params
from denoise.models.build import build_model
from denoise.tracking.models import log_denoiser

folder = Path(sys.argv[1])
params = load_params(sys.argv[2])
model = build_model("paper_cae", params.train)
model.compile(optimizer="adam", loss="mse")
rng = np.random.default_rng(0)
clean = rng.random((8, 16, 16, 3), dtype=np.float32)
model.fit(clean + 0.1 * rng.standard_normal(clean.shape).astype("float32"), clean,
          epochs=1, batch_size=4, verbose=0)
model.save(folder / "model.keras")
with mlflow.start_run():
    info = log_denoiser(folder / "model.keras", params=params)
probe = np.load(folder / "probe.npy")
expected = mlflow.pyfunc.load_model(info.model_uri).predict(probe)
np.save(folder / "expected.npy", expected)
print(json.dumps({"uri": info.model_uri, "backend": keras.backend.backend()}))
"""


def _environment(folder: Path, without: str) -> Path:
    """A virtual environment with this one's packages but backend `without`'s; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    (site,) = (folder / "lib").glob("python3*/site-packages")
    source = Path(sysconfig.get_paths()["purelib"])
    dropped = BACKEND_PACKAGES[without]
    for entry in source.iterdir():
        top = entry.name.split("-")[0].lower()
        if top in dropped or entry.name == "__pycache__":
            continue
        (site / entry.name).symlink_to(entry)
    python = folder / "bin" / "python"
    # The environment's scripts: serve.sh runs `mlflow`, the scoring server `uvicorn`.
    for script, entry in (("mlflow", "mlflow.cli:cli"), ("uvicorn", "uvicorn.main:main")):
        module, function = entry.split(":")
        path = folder / "bin" / script
        path.write_text(f"#!{python}\nfrom {module} import {function}\n{function}()\n")
        path.chmod(0o755)
    probe = subprocess.run(
        [str(python), "-c", f"import {without}"], capture_output=True, text=True, check=False
    )
    assert probe.returncode != 0, f"{without} is still importable in {folder}"
    return python


def _env(folder: Path, python: Path, tracking_uri: str) -> dict[str, str]:
    """This process's environment for python's virtual environment, with no Keras backend
    chosen (no KERAS_BACKEND, a Keras home without keras.json) and no MLflow setting but the
    tracking URI (an earlier test's set_experiment leaves MLFLOW_EXPERIMENT_ID behind)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in {"KERAS_BACKEND", "VIRTUAL_ENV", "PYTHONPATH"}
        and not name.startswith("MLFLOW_")
    }
    return {
        **environment,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "KERAS_HOME": str(folder / "keras-home"),
        "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}",
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("trained_on", "served_on"), [("jax", "tensorflow"), ("tensorflow", "jax")]
)
def test_a_model_trained_on_one_backend_serves_from_an_environment_with_only_the_other(
    trained_on: str, served_on: str, tmp_path: Path
) -> None:
    training = _environment(tmp_path / f"only-{trained_on}", without=served_on)
    serving = _environment(tmp_path / f"only-{served_on}", without=trained_on)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    probe = np.random.default_rng(1).random((1, 24, 24, 3), dtype=np.float32)
    np.save(tmp_path / "probe.npy", probe)

    trained = subprocess.run(
        [str(training), "-c", TRAIN_AND_LOG, str(tmp_path), str(PROJECT_ROOT / "params.yaml")],
        cwd=tmp_path,
        # The trainer chooses its backend, as a GPU worker does (KERAS_BACKEND=jax).
        env={**_env(tmp_path, training, tracking_uri), "KERAS_BACKEND": trained_on},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    logged = json.loads(trained.stdout.strip().splitlines()[-1])
    assert logged["backend"] == trained_on
    model_file = (tmp_path / "mlruns").rglob("MLmodel")
    metadata = [path.read_text() for path in model_file]
    assert any(f"keras_backend: {trained_on}" in text for text in metadata), metadata

    # The serving image's entry point, in the serving environment.
    port = free_port()
    environment = {
        **_env(tmp_path, serving, tracking_uri),
        "MODEL_URI": logged["uri"],
        "PORT": str(port),
    }
    process = start([str(SERVE)], tmp_path / "serve.log", env=environment, inherit=False)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ping", 240, process)
    except BaseException:
        stop(process)
        raise
    try:
        answer = requests.post(f"{url}/invocations", json={"inputs": probe.tolist()}, timeout=120)
        assert answer.status_code == 200, answer.text[:2000]
        served = np.asarray(answer.json()["predictions"], dtype=np.float32)
    finally:
        stop(process)
    log = (tmp_path / "serve.log").read_text()
    assert f"Keras backend {served_on} (trained on {trained_on}" in log, log[-3000:]
    assert served.shape == probe.shape
    # Same weights, another backend's kernels: equal up to float32 round-off.
    np.testing.assert_allclose(served, np.load(tmp_path / "expected.npy"), atol=1e-4)
    assert "Traceback" not in log, log[-3000:]


def test_the_serving_entry_point_names_a_missing_tracking_server() -> None:
    result = subprocess.run(
        [str(SERVE)], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: MLFLOW_TRACKING_URI is not set: point it at the tracking server"
    ]


def test_the_serving_image_runs_the_entry_point() -> None:
    lines = (PROJECT_ROOT / "infra" / "serving" / "Dockerfile").read_text().splitlines()
    assert "COPY infra/serving/serve.sh /usr/local/bin/denoise-serve" in lines
    assert 'ENTRYPOINT ["denoise-serve"]' in lines
