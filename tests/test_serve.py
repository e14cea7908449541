"""The champion through a real `mlflow server`: pyfunc load, `mlflow models serve`, `apply`.

One tracking server (SQLite, proxied artifacts) on loopback for the module; an untrained
paper_cae is logged with log_denoiser, registered, and given the champion alias.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import mlflow
import numpy as np
import pytest
import requests
from conftest import PROJECT_ROOT
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
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


def test_champion_refuses_what_it_cannot_denoise_and_takes_unclipped_noise(champion: str) -> None:
    """In Python as served: NaN and infinities are refused in one line, integer images by the
    signature (float32); values a little outside [0, 1], as unclipped noise has, are taken."""
    loaded = mlflow.pyfunc.load_model(champion)
    noisy = _noisy(20, 24)
    noisy[0, 3, 5, 1] = np.nan
    with pytest.raises(ValueError, match=r"^NaN or infinite value at index \(0, 3, 5, 1\): send"):
        loaded.predict(noisy)
    with pytest.raises(MlflowException, match="dtype of input uint8 does not match"):
        loaded.predict(np.full((1, 20, 24, 3), 255, np.uint8))
    unclipped = _noisy(20, 24) * 1.6 - 0.3
    assert loaded.predict(unclipped).shape == unclipped.shape


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


# The served champion's limits (params.apply's keys, through SERVING_MODEL_CONFIG) and timeout
# (seconds), small so that each refusal is quick to provoke. The self-ensemble and 16 px tiles
# make many short model calls of every image, so that the model's work on a batch outlasts the
# timeout on any machine and stops at a call soon after it.
SERVED_CONFIG = {
    "max_request_megabytes": 16,
    "max_megapixels": 0.05,
    "self_ensemble": True,
    "tile_size": 16,
    "overlap": 8,
}
SERVED_TIMEOUT = 4


@dataclasses.dataclass(frozen=True)
class Served:
    """The champion behind `mlflow models serve`: its base URL, port and log file."""

    url: str
    port: int
    log: Path


@pytest.fixture(scope="module")
def served(
    champion: str, tracking_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    log = tmp_path_factory.mktemp("model-server") / "serve.log"
    url, process = start_model_server(
        champion,
        tracking_server,
        log,
        arguments=("--timeout", str(SERVED_TIMEOUT)),
        env={"SERVING_MODEL_CONFIG": json.dumps(SERVED_CONFIG)},
    )
    try:
        served = Served(url, int(url.rsplit(":", 1)[1]), log)
        _small_request_seconds(served)  # the first model call traces it: not a test's baseline
        yield served
    finally:
        stop(process)


def test_served_champion_answers_invocations(served: Served) -> None:
    noisy = _noisy(75, 61)
    response = requests.post(
        f"{served.url}/invocations", json={"inputs": noisy.tolist()}, timeout=120
    )
    assert response.status_code == 200, response.text[:500]
    denoised = np.asarray(response.json()["predictions"], dtype=np.float32)
    assert denoised.shape == noisy.shape
    assert denoised.min() >= 0.0 and denoised.max() <= 1.0


SMALL_REQUEST = json.dumps({"inputs": _noisy(30, 41).round(3).tolist()})


def _small_request_seconds(served: Served) -> float:
    """Seconds a small request (one 30 x 41 image) takes to be answered, 200 and denoised."""
    started = time.monotonic()
    response = requests.post(
        f"{served.url}/invocations",
        data=SMALL_REQUEST,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:300]
    return time.monotonic() - started


def _baseline_seconds(served: Served) -> float:
    """The slowest of five small requests on an otherwise idle server: what the machine's load
    alone costs, so that a promise about a small request's time holds on a loaded machine."""
    return max(_small_request_seconds(served) for _ in range(5))


def _one_line_error(response: requests.Response, status: int) -> str:
    """The message of an error answer, checked to be one line of JSON that quotes no input."""
    assert response.status_code == status, response.text[:300]
    assert "\n" not in response.text.strip() and len(response.text) < 400, response.text[:500]
    message = response.json()["message"]
    assert isinstance(message, str) and "\n" not in message
    return message


def _post(served: Served, body: str | bytes) -> requests.Response:
    return requests.post(
        f"{served.url}/invocations",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"inputs": [[[[NaN, 0.5, 0.5]]]]}', "NaN or infinite value at index (0, 0, 0, 0)"),
        ('{"inputs": [[[[0.5, Infinity, 0.5]]]]}', "NaN or infinite value at index (0, 0, 0, 1)"),
        ('{"inputs": [[[[0.5, 0.5, -Infinity]]]]}', "NaN or infinite value"),
        # an 8-bit image sent as it is: 0..255 would come back all white
        (json.dumps({"inputs": [[[[255, 0, 128], [12, 200, 7]]]]}), "divide 8-bit images by 255"),
        ('{"inputs": [[[[0.5, -5.0, 0.5]]]]}', "got -5 to 0.5"),
        ('{"inputs": [[[[true, false, true]]]]}', "true and false are no pixel values"),
        ("x" * 1_000_000, "valid JSON"),  # junk under the size limit: its start at most
        ('{"inputs": [[[0.5, 0.5, 0.5]]]}', "does not match expected shape"),
    ],
    ids=[
        "nan",
        "infinity",
        "minus-infinity",
        "integers",
        "out-of-range",
        "booleans",
        "junk",
        "shape",
    ],
)
def test_served_model_refuses_bad_values_in_one_line(served: Served, body: str, says: str) -> None:
    message = _one_line_error(_post(served, body), 400)
    assert says in message
    assert "x" * 201 not in message  # at most 200 characters of the input


def test_served_model_refuses_an_image_over_the_pixel_limit(served: Served) -> None:
    too_large = np.zeros((1, 200, 300, 3), np.float32)  # 0.06 megapixels, over 0.05
    message = _one_line_error(_post(served, json.dumps({"inputs": too_large.tolist()})), 413)
    assert message.startswith("an image of 200 x 300 pixels (0.1 megapixels) is over this ")
    assert "(apply.max_megapixels)" in message


def _send_headers(port: int, length: int | None) -> socket.socket:
    """A connection with a POST /invocations request's headers sent: Content-Length length,
    or chunked when None. The caller sends the body."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=60)
    declared = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    connection.sendall(
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\n{declared}\r\n\r\n".encode()
    )
    return connection


def _read_answer(connection: socket.socket) -> tuple[int, str]:
    """The status and body of the answer on connection: read until its Content-Length is in,
    or the server closes the connection."""
    received = b""
    while True:
        head, found, body = received.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: *(\d+)", head.lower())
        if found and length is not None and len(body) >= int(length.group(1)):
            break
        part = connection.recv(65536)
        if not part:
            break
        received += part
    return int(head.split()[1]), body.decode()


def test_served_model_refuses_an_oversized_body_before_reading_it(served: Served) -> None:
    """The issue's 4000 x 4000 x 3 JSON request (224 MB) is answered 413 from its headers alone:
    not a byte of its body has been sent."""
    connection = _send_headers(served.port, 224_000_000)
    try:
        status, body = _read_answer(connection)
    finally:
        connection.close()
    assert status == 413
    message = json.loads(body)["message"]
    assert message.startswith("the request holds 224.0 MB, over this server's 16 MB ")


def test_a_small_request_is_answered_while_a_refused_large_one_is_in_flight(
    served: Served,
) -> None:
    """A chunked upload (no Content-Length) of junk is read only up to the limit, then refused
    with 413; while it streams in, small requests are answered within 0.5 s of the time they
    take on the idle server (measured: the baseline and the slowest are printed)."""
    baseline = _baseline_seconds(served)
    answer: dict[str, tuple[int, str]] = {}
    chunk = b"[" * (1 << 20)  # 1 MiB, junk: it must never be parsed

    def upload() -> None:
        connection = _send_headers(served.port, None)
        try:
            with contextlib.suppress(OSError):  # the server may close once it has answered
                for _ in range(40):
                    connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    time.sleep(0.1)  # about 10 MB/s: several seconds in flight
                    if select.select([connection], [], [], 0)[0]:
                        break
            answer["upload"] = _read_answer(connection)
        finally:
            connection.close()

    uploader = threading.Thread(target=upload)
    uploader.start()
    during = []
    while uploader.is_alive():
        during.append(_small_request_seconds(served))
    uploader.join()
    print(
        f"small request: {baseline:.3f} s idle, at most {max(during):.3f} s in {len(during)} "
        "requests during the upload"
    )
    status, body = answer["upload"]
    assert status == 413, body
    assert json.loads(body)["message"].startswith(
        "the request holds more than this server's 16 MB (apply.max_request_megabytes)"
    )
    assert len(during) >= 3
    assert max(during) < baseline + 0.5


def test_a_request_past_the_timeout_stops_its_work(served: Served) -> None:
    """MLflow answers 504 at its timeout; the model's work stops then too (the server logs it),
    and small requests are answered within 0.5 s of their idle time again."""
    baseline = _baseline_seconds(served)
    # Images under the pixel limit, of 0 and 1 only to keep the body small (1.1 MB): seconds
    # of MLflow's JSON reading, which nothing can stop, then about 2900 model calls.
    images = np.random.default_rng(0).integers(0, 2, (8, 150, 150, 3))
    stops = served.log.read_text().count("its work stopped")
    started = time.monotonic()
    response = _post(served, json.dumps({"inputs": images.tolist()}, separators=(",", ":")))
    assert response.status_code == 504, response.text[:300]
    deadline = time.monotonic() + 120
    while served.log.read_text().count("its work stopped") == stops:
        assert time.monotonic() < deadline, "the timed-out request's work did not stop"
        time.sleep(0.2)
    stopped_after = time.monotonic() - started
    after = [_small_request_seconds(served) for _ in range(3)]
    print(
        f"504 after {response.elapsed.total_seconds():.1f} s, work stopped within "
        f"{stopped_after:.1f} s; small request {baseline:.3f} s idle, {max(after):.3f} s after"
    )
    assert max(after) < baseline + 0.5


def test_apply_uses_the_champion_by_default(champion: str, tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.round(_noisy(101, 203)[0] * 255).astype(np.uint8))
    result = CliRunner().invoke(
        app, ["apply", str(image), "-o", str(tmp_path / "out"), "--params", str(PARAMS_FILE)]
    )
    assert result.exit_code == 0, result.stderr
    assert f"model: {champion}" in result.stdout
    assert cv2.imread(str(tmp_path / "out" / "frame.png")).shape == (101, 203, 3)
    # its metadata holds no trained noise range (logged without one): said, not guessed
    assert f"{image}: noise level" in result.stderr and "range: unknown" in result.stderr


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
