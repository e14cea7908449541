"""The Python API, `from denoise import Denoiser`: loading, dtypes and channels, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tiny_video

from denoise.core.errors import InputError, ModelError
from denoise.core.metrics import psnr
from denoise.data.video import probe


@pytest.fixture(scope="module")
def shipped():  # type: ignore[no-untyped-def]
    from denoise import Denoiser

    return Denoiser.load("pretrained")


def _noisy(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth clean image and it with sigma 25 noise, float32 in [0, 1]."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape[:2])
    clean = np.stack([rows, cols, (rows + cols) / 2][: shape[2]], axis=-1).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 25 / 255, clean.shape)
    return clean, np.clip(clean + noise, 0, 1).astype(np.float32)


def test_importing_denoise_loads_neither_tensorflow_nor_mlflow() -> None:
    probe_imports = (
        "import sys, denoise, denoise.serving.api; from denoise import Denoiser; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow', 'prefect', 'dvc', "
        "'great_expectations') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe_imports], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_shipped_model_denoises_and_keeps_dtype_shape_and_channels(shipped) -> None:  # type: ignore[no-untyped-def]
    clean, noisy = _noisy((64, 64, 3))
    denoised = shipped.denoise(noisy)
    assert denoised.dtype == np.float32 and denoised.shape == noisy.shape
    assert psnr(clean, denoised) > psnr(clean, noisy) + 3
    eight_bit = np.round(noisy * 255).astype(np.uint8)
    assert shipped.denoise(eight_bit).dtype == np.uint8
    batch = shipped.denoise(np.stack([noisy, noisy]))
    assert batch.shape == (2, 64, 64, 3)
    grey = shipped.denoise(noisy[..., :1])
    assert grey.shape == (64, 64, 1)
    rgba = np.concatenate([noisy, np.full((64, 64, 1), 0.25, np.float32)], axis=2)
    assert np.array_equal(shipped.denoise(rgba)[..., 3], rgba[..., 3])  # alpha copied


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((8, 8, 3), bool), "dtype bool is not an image type"),
        (np.zeros((8, 8), np.float32), r"shape \(8, 8\): give one image"),
        (np.zeros((8, 8, 2), np.float32), "2 channels"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN or infinite"),
        (np.full((8, 8, 3), 255.0, np.float32), r"must lie in \[0, 1\]"),
    ],
)
def test_bad_images_are_one_line_naming_what_is_wrong(shipped, images, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message) as caught:
        shipped.denoise(images)
    assert "\n" not in str(caught.value)


def test_an_unknown_model_is_one_line() -> None:
    from denoise import Denoiser

    with pytest.raises(ModelError, match="champio: no such model") as caught:
        Denoiser.load("champio")
    assert "\n" not in str(caught.value)


def test_champion_falls_back_to_the_shipped_model_with_a_note(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An empty tracking store of its own: the session's may hold another test's champion."""
    import mlflow

    from denoise import Denoiser

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        denoiser = Denoiser.load("champion")
    finally:
        mlflow.set_tracking_uri(previous)
    assert denoiser.source.endswith(".keras")
    assert "using the shipped pretrained model" in capsys.readouterr().err


def test_a_video_comes_out_with_its_frames(shipped, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_tiny_video(tmp_path / "clip.avi", num_frames=6, size=32)
    applied = shipped.denoise_video(source, tmp_path / "out.avi")
    assert applied.frames == 6
    assert probe(tmp_path / "out.avi").frame_count == 6
