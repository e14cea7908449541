"""The OpenVINO backend of apply and the API: its PSNR cost, its kept copy, its choice and
errors; and whole frames in one model call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from denoise.cli import app
from denoise.core.config import default_params
from denoise.core.errors import ModelError
from denoise.core.metrics import psnr
from denoise.models.pretrained import pretrained_model_path
from denoise.serving import backends
from denoise.serving.tiling import denoise_batch, denoise_image

openvino_only = pytest.mark.skipif(
    not backends.openvino_installed(), reason="needs openvino (the fast extra)"
)


def _photographs(size: int) -> list[np.ndarray]:
    """scikit-image colour photographs, centre-cropped and area-resized: float32 in [0, 1]."""
    from skimage import data

    clean = []
    for name in ("astronaut", "chelsea", "coffee"):
        image = getattr(data, name)()
        side = min(image.shape[:2])
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        square = image[top : top + side, left : left + side]
        clean.append(cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA) / 255.0)
    return [image.astype(np.float32) for image in clean]


@openvino_only
def test_the_fast_path_costs_at_most_005_db_on_the_shipped_model(tmp_path: Path) -> None:
    from denoise.models.build import load_model

    keras_model = load_model(pretrained_model_path())
    fast = backends.load_openvino(pretrained_model_path(), tmp_path)
    rng = np.random.default_rng(0)
    gains = {"keras": [], "openvino": []}  # type: dict[str, list[float]]
    for clean in _photographs(128):
        noisy = clean + rng.normal(0, 25 / 255, clean.shape).astype(np.float32)  # unclipped
        for name, model in (("keras", keras_model), ("openvino", fast)):
            gains[name].append(psnr(clean, denoise_image(model, noisy, 256, 32, 8)))
    cost = float(np.mean(gains["keras"]) - np.mean(gains["openvino"]))
    assert np.mean(gains["keras"]) > 28.0  # the shipped model denoises
    assert cost <= 0.05, f"{fast.description} costs {cost:.3f} dB"


@openvino_only
def test_the_copy_is_kept_and_serves_without_tensorflow(tmp_path: Path) -> None:
    folder = backends.converted_copy(pretrained_model_path(), tmp_path / "converted")
    assert folder.name == backends.file_sha256(pretrained_model_path())
    assert backends.converted_copy(pretrained_model_path(), tmp_path / "converted") == folder
    serve = (
        "import sys, numpy as np; from denoise import Denoiser; "
        "d = Denoiser.load('pretrained', backend='openvino'); "
        "out = d.denoise(np.full((40, 56, 3), 0.5, np.float32)); "
        "print(d.backend, out.shape, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    environment = os.environ | {"XDG_CACHE_HOME": str(tmp_path)}
    params = default_params().apply
    assert params.converted_dir == "~/.cache/denoise/openvino"  # the copy above is found there
    (tmp_path / "denoise").mkdir()
    (tmp_path / "converted").rename(tmp_path / "denoise" / "openvino")
    result = subprocess.run(
        [sys.executable, "-c", serve], capture_output=True, text=True, timeout=300,
        env=environment,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "OpenVINO,"
    assert result.stdout.strip().endswith("(40, 56, 3) False False")


def test_the_backend_choice_and_its_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from denoise import Denoiser

    monkeypatch.setattr(backends, "openvino_installed", lambda: False)
    assert backends.resolve_backend("auto") == backends.KERAS
    with pytest.raises(ModelError, match="openvino backend is not installed") as caught:
        Denoiser.load("pretrained", backend="openvino")
    assert "\n" not in str(caught.value)
    with pytest.raises(ModelError, match="backend 'tpu'") as caught:
        Denoiser.load("pretrained", backend="tpu")
    assert "\n" not in str(caught.value)
    monkeypatch.setattr(backends, "openvino_installed", lambda: True)
    assert backends.resolve_backend("auto") == backends.OPENVINO
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # a GPU worker keeps Keras
    assert backends.resolve_backend("auto") == backends.KERAS


def test_apply_names_its_backend(tmp_path: Path) -> None:
    image = tmp_path / "noisy.png"
    cv2.imwrite(str(image), np.full((24, 40, 3), 128, np.uint8))
    arguments = ["apply", str(image), "-o", str(tmp_path / "out"), "--model", "pretrained"]
    result = CliRunner().invoke(app, [*arguments, "--backend", "keras"])
    assert result.exit_code == 0, result.output
    assert "(Keras (tensorflow), float32)" in result.output
    result = CliRunner().invoke(app, [*arguments, "--backend", "tpu"])
    assert result.exit_code != 0
    assert "--backend tpu: apply.backend" in result.output


def _blur(calls: list[tuple[int, ...]]):  # type: ignore[no-untyped-def]
    """A 3x3 box blur as a Predictor that records each call's batch shape."""

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        padded = np.pad(batch, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        height, width = batch.shape[1:3]
        return sum(
            padded[:, row : row + height, column : column + width]
            for row in range(3)
            for column in range(3)
        ) / np.float32(9.0)

    return predict


def test_a_frame_that_fits_runs_whole_in_one_call() -> None:
    noisy = np.random.default_rng(0).random((3, 72, 128, 3), dtype=np.float32)
    whole_calls: list[tuple[int, ...]] = []
    whole = denoise_batch(_blur(whole_calls), noisy, 32, 8, 8, whole_megapixels=0.02)
    assert whole_calls == [(2, 72, 128, 3), (1, 72, 128, 3)]  # two frames fit in 0.02 Mpx
    tiled_calls: list[tuple[int, ...]] = []
    tiled = denoise_batch(_blur(tiled_calls), noisy, 32, 8, 8)
    assert len(tiled_calls) > 3 and tiled_calls[0] == (8, 32, 32, 3)
    assert min(psnr(one, other) for one, other in zip(whole, tiled, strict=True)) > 50.0
