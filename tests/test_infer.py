"""Tiled inference and `denoise apply`: tiles agree with whole-image inference, sizes survive."""

from __future__ import annotations

from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from conftest import PROJECT_ROOT, write_tiny_video
from servers import free_port
from typer.testing import CliRunner

from denoise.cli import app
from denoise.core.config import default_params
from denoise.core.metrics import psnr
from denoise.models.build import build_model
from denoise.serving.tiling import denoise_batch, denoise_image, self_ensemble

HEIGHT, WIDTH = 701, 1001  # odd on purpose: neither is a multiple of 4 or of a tile


def _test_image(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """clean and noisy float32 (H, W, 3) in [0, 1]: smooth colour waves plus sigma-25 noise."""
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    clean = np.stack(
        [
            columns / width,
            rows / height,
            0.5 + 0.4 * np.sin(rows / 13.0) * np.cos(columns / 17.0),
        ],
        axis=-1,
    ).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 25 / 255, clean.shape)
    return clean, np.clip(clean + noise, 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def trained() -> dict[str, keras.Model]:
    """paper_cae and dense_ae after 20 Adam steps: far enough from their initial near-constant
    output that a seam between tiles would show (an untrained model hides it)."""
    keras.utils.set_random_seed(0)
    clean, noisy = _test_image(128, 128, seed=1)
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 128 - 32, size=(64, 2))
    noisy_patches = np.stack([noisy[top : top + 32, left : left + 32] for top, left in corners])
    clean_patches = np.stack([clean[top : top + 32, left : left + 32] for top, left in corners])
    models = {}
    for name in ("paper_cae", "dense_ae"):
        model = build_model(name, default_params().train)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        model.fit(noisy_patches, clean_patches, batch_size=16, epochs=5, verbose=0)
        models[name] = model
    return models


@pytest.fixture(scope="module")
def model_file(trained: dict[str, keras.Model], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "paper_cae.keras"
    trained["paper_cae"].save(path)
    return path


@pytest.mark.parametrize("name", ["paper_cae", "dense_ae"])
def test_tiles_agree_with_the_whole_image(name: str, trained: dict[str, keras.Model]) -> None:
    model = trained[name]
    _, noisy = _test_image(HEIGHT, WIDTH)
    whole = denoise_image(model, noisy, tile_size=4096, overlap=32, batch_size=8)
    tiled = denoise_image(model, noisy, tile_size=256, overlap=32, batch_size=8)
    assert whole.shape == tiled.shape == (HEIGHT, WIDTH, 3)
    assert tiled.dtype == np.float32 and tiled.min() >= 0.0 and tiled.max() <= 1.0
    assert psnr(whole, tiled) >= 50.0
    # The check has teeth: tiles simply butted together show their seams (checked on a crop
    # that still holds several tiles, to save time).
    crop = noisy[:300, :400]
    butted = denoise_image(model, crop, tile_size=128, overlap=0, batch_size=8)
    assert psnr(denoise_image(model, crop, 4096, 32, 8), butted) < 50.0


def test_tiles_reassemble_exactly() -> None:
    """With the identity as the model, padding, tiling and blending give the input back."""
    _, noisy = _test_image(HEIGHT, WIDTH)
    batch = np.stack([noisy, noisy[::-1, ::-1]])
    result = denoise_batch(lambda tiles: tiles, batch, tile_size=128, overlap=32, batch_size=5)
    np.testing.assert_allclose(result, batch, atol=1e-6)


def test_an_image_smaller_than_a_tile_is_padded_and_denoised_whole(
    trained: dict[str, keras.Model],
) -> None:
    model = trained["paper_cae"]
    _, noisy = _test_image(9, 13)
    denoised = denoise_image(model, noisy, tile_size=256, overlap=32, batch_size=8)
    padded = np.pad(noisy, ((0, 7), (0, 3), (0, 0)), mode="reflect")  # to 16x16, the minimum
    expected = keras.ops.convert_to_numpy(model(padded[None]))[0, :9, :13]
    assert denoised.shape == (9, 13, 3)
    np.testing.assert_allclose(denoised, np.clip(expected, 0, 1), atol=1e-6)


def test_self_ensemble_averages_the_eight_orientations_and_turns_each_back() -> None:
    """A predictor that adds a ramp along the width of whatever it sees: each of the 8 views
    gets the ramp in its own orientation; turned back, they average to the ramp's mean (0.5)
    everywhere on a square tile. The identity stays the identity on a non-square batch."""
    rng = np.random.default_rng(0)
    square = rng.random((2, 12, 12, 3), dtype=np.float32)

    def add_ramp(batch: np.ndarray) -> np.ndarray:
        ramp = np.linspace(0.0, 1.0, batch.shape[2], dtype=np.float32)
        return batch + ramp[None, None, :, None]

    np.testing.assert_allclose(self_ensemble(add_ramp)(square), square + 0.5, atol=1e-6)
    wide = rng.random((2, 8, 20, 3), dtype=np.float32)
    shapes: list[tuple[int, ...]] = []

    def identity(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return batch

    np.testing.assert_allclose(self_ensemble(identity)(wide), wide, atol=1e-6)
    assert len(shapes) == 8 and set(shapes) == {(2, 8, 20, 3), (2, 20, 8, 3)}


def test_a_self_ensembled_model_is_the_mean_over_flips_and_turns(
    trained: dict[str, keras.Model],
) -> None:
    model = trained["paper_cae"]
    _, noisy = _test_image(40, 56)
    ensembled = denoise_image(model, noisy, tile_size=256, ensemble=True, overlap=32, batch_size=8)

    def run(image: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(model(np.ascontiguousarray(image)[None]))[0]

    views = []
    for turns in range(4):
        turned = np.rot90(noisy, turns)
        views.append(np.rot90(run(turned), -turns))
        views.append(np.rot90(run(turned[:, ::-1])[:, ::-1], -turns))
    expected = np.clip(np.mean(views, axis=0), 0.0, 1.0)
    np.testing.assert_allclose(ensembled, expected, atol=1e-5)
    plain = denoise_image(model, noisy, tile_size=256, overlap=32, batch_size=8)
    assert np.abs(ensembled - plain).max() > 1e-3  # paper_cae is not orientation-invariant


def _invoke(*arguments: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["apply", *arguments])
    return result.exit_code, result.stdout, result.stderr


def test_apply_keeps_image_size_and_bit_depth(tmp_path: Path, model_file: Path) -> None:
    _, noisy = _test_image(HEIGHT, WIDTH)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.round(noisy * 255).astype(np.uint8))
    deep = tmp_path / "deep.tif"
    cv2.imwrite(str(deep), np.round(noisy[:30, :50] * 65535).astype(np.uint16))
    output = tmp_path / "out"
    code, stdout, stderr = _invoke(
        str(photo), str(deep), "-o", str(output), "--model", str(model_file)
    )
    assert code == 0, stderr
    denoised = cv2.imread(str(output / "photo.png"), cv2.IMREAD_UNCHANGED)
    assert denoised.shape == (HEIGHT, WIDTH, 3) and denoised.dtype == np.uint8
    deep_denoised = cv2.imread(str(output / "deep.tif"), cv2.IMREAD_UNCHANGED)
    assert deep_denoised.shape == (30, 50, 3) and deep_denoised.dtype == np.uint16
    assert f"({WIDTH}x{HEIGHT})" in stdout
    assert sorted(path.name for path in output.iterdir()) == ["deep.tif", "photo.png"]


def test_apply_self_ensembles_on_request(tmp_path: Path, model_file: Path) -> None:
    _, noisy = _test_image(48, 64)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(np.round(noisy * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    output = tmp_path / "out"
    code, _, stderr = _invoke(
        str(photo), "-o", str(output), "-m", str(model_file), "--self-ensemble"
    )
    assert code == 0, stderr
    written = cv2.cvtColor(cv2.imread(str(output / "photo.png")), cv2.COLOR_BGR2RGB)
    model = keras.models.load_model(model_file)
    read = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    expected = np.round(denoise_image(model, read, 256, 32, 8, ensemble=True) * 255)
    assert np.abs(written.astype(np.float32) - expected).max() <= 1.0  # 8-bit rounding


def test_apply_computes_in_bfloat16_on_request(tmp_path: Path, model_file: Path) -> None:
    _, noisy = _test_image(48, 64)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.round(noisy * 255).astype(np.uint8))
    outputs = {}
    for precision in ("float32", "bfloat16"):
        output = tmp_path / precision
        model = ["-m", str(model_file), "--backend", "keras"]  # Keras's mixed precision
        code, _, stderr = _invoke(str(photo), "-o", str(output), *model, "--precision", precision)
        assert code == 0, stderr
        outputs[precision] = cv2.imread(str(output / "photo.png")).astype(np.float32)
    gap = np.abs(outputs["bfloat16"] - outputs["float32"])
    assert 0 < gap.max() <= 6  # 8-bit levels: bf16 arithmetic, about its resolution
    code, _, stderr = _invoke(
        str(photo), "-o", str(tmp_path / "x"), "-m", str(model_file), "--precision", "float16"
    )
    assert code == 1
    assert stderr.strip() == (
        "error: --precision float16: apply.precision: must be one of float32, bfloat16, "
        "got 'float16'"
    )
    code, _, stderr = _invoke(str(photo), "-o", str(tmp_path / "x"), "--tile", "30")
    assert code == 1 and stderr.startswith("error: --tile 30: apply.tile_size: must be")


def _read_back(path: Path) -> tuple[int, float, int, int]:
    """(decoded frames, fps, width, height) of a video, as OpenCV reads it."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames, fps, width, height


def test_apply_keeps_frame_count_size_and_rate_of_a_video(tmp_path: Path, model_file: Path) -> None:
    clip = write_tiny_video(tmp_path / "clip.avi", num_frames=12, size=40, fps=6.0)
    folder_output, file_output = tmp_path / "out", tmp_path / "clip-denoised.mp4"
    for output in (folder_output, file_output):
        code, _, stderr = _invoke(str(clip), "-o", str(output), "--model", str(model_file))
        assert code == 0, stderr
    assert _read_back(folder_output / "clip.avi") == (12, 6.0, 40, 40)
    assert _read_back(file_output) == (12, 6.0, 40, 40)


def test_apply_rejects_an_unreadable_image_with_one_error_line(
    tmp_path: Path, model_file: Path
) -> None:
    fake = tmp_path / "x.png"
    fake.write_text("not an image")
    code, _, stderr = _invoke(str(fake), "-o", str(tmp_path / "out"), "--model", str(model_file))
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {fake}: not an image OpenCV can read"]
    assert not (tmp_path / "out").exists()


def test_apply_names_a_missing_model_file(tmp_path: Path) -> None:
    _, noisy = _test_image(8, 8)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.round(noisy * 255).astype(np.uint8))
    code, _, stderr = _invoke(str(image), "-o", str(tmp_path / "out"), "--model", "absent.keras")
    assert code == 1
    assert stderr.startswith("error: absent.keras: no such model")


def test_apply_says_when_no_tracking_server_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    params = str(PROJECT_ROOT / "params.yaml")
    code, _, stderr = _invoke(str(image), "-o", str(tmp_path / "out"), "--params", params)
    assert code == 1
    assert stderr.startswith(f"error: no MLflow tracking server answers at {server}: ")
