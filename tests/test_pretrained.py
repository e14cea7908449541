"""The model shipped with the package: small, loadable, scored as its card says, trained on no
validation or test frame, and what `denoise apply` uses before any champion exists."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PROJECT_ROOT

from denoise.core.config import Params, load_params
from denoise.core.noise import apply_noise, set_rng
from denoise.data.evalsets import (
    DEBIAN_MATPLOTLIB_DATA,
    PHOTOGRAPHS,
    held_out_source,
    load_photograph,
)
from denoise.data.extract import frame_digests, load_manifest
from denoise.data.samples import find_sample
from denoise.data.sources import file_sha256
from denoise.data.stills import tiles
from denoise.data.video import centre_crop_resize
from denoise.evaluation.adapters import model_denoiser
from denoise.evaluation.scoring import score
from denoise.models.build import build_model, load_model, start_from
from denoise.models.pretrained import PRETRAINED_MODEL, pretrained_card
from denoise.stages.extract import run as run_extract
from denoise.stages.samples import run as run_samples

MAX_BYTES = 10 * 1024 * 1024
CARD_TOLERANCE_DB = 0.05


def test_the_shipped_model_is_small_and_fits_its_architecture() -> None:
    card = pretrained_card()
    assert PRETRAINED_MODEL.stat().st_size <= MAX_BYTES
    params = load_params(PROJECT_ROOT / "params.yaml")
    model = build_model(card["name"], params.train)
    start_from(model, load_model(PRETRAINED_MODEL), card["name"], "pretrained")
    assert card["training_noise"]["kind"] == "gaussian_blind"


def test_its_photograph_score_is_the_one_on_its_card() -> None:
    """Sigma 25 on the evaluation photographs, drawn and scored as the noise and evaluate
    stages do."""
    params = load_params(PROJECT_ROOT / "params.yaml")
    clean = np.stack(
        [load_photograph(name, params.noise.photograph_size) for name in params.noise.photographs]
    )
    noisy = apply_noise(
        clean, "gaussian", 25.0, set_rng(params.seed, PHOTOGRAPHS, "gaussian", "25")
    )
    denoiser = model_denoiser(load_model(PRETRAINED_MODEL), batch_size=4)
    measured = float(np.mean(score(clean, noisy, 25.0, denoiser, keep=0).psnr))
    expected = pretrained_card()["scores"][PHOTOGRAPHS]["gaussian-25"]["model"]["psnr"]
    assert abs(measured - expected) <= CARD_TOLERANCE_DB, (measured, expected)


def _pixel_hashes(params: Params, splits: tuple[str, ...]) -> set[str]:
    frames_dir = Path(params.paths.frames)
    manifest = load_manifest(frames_dir)
    return set(frame_digests(frames_dir, manifest[manifest["split"].isin(splits)]))


@pytest.mark.slow
def test_none_of_its_training_frames_is_a_validation_or_test_frame(tmp_path: Path) -> None:
    """The sample videos extracted with the default settings: every frame the card lists from a
    video is a train frame of it, and no validation or test frame is among them."""
    params = load_params(PROJECT_ROOT / "params.yaml")
    if any(find_sample(name) is None for name in params.samples.videos):
        pytest.skip("Debian's opencv-doc sample videos are not installed (make test installs them)")
    paths = {
        field.name: str(tmp_path / getattr(params.paths, field.name))
        for field in dataclasses.fields(params.paths)
    }
    params = dataclasses.replace(params, paths=type(params.paths)(**paths))
    run_samples(params)
    run_extract(params)
    card = pretrained_card()["training_frames"]
    from_videos = {digest for name in params.samples.videos for digest in card[name]}
    assert from_videos, "the card lists the videos' frames"
    assert from_videos <= _pixel_hashes(params, ("train",))
    assert not from_videos & _pixel_hashes(params, ("validation", "test"))
    assert not {digest for digests in card.values() for digest in digests} & _pixel_hashes(
        params, ("validation", "test")
    )


def _evaluation_photographs(params: Params) -> dict[str, np.ndarray]:
    """Every photograph an evaluation set scores (noise.photographs, noise.held_out), uint8
    (H, W, 3) RGB as its source holds it."""
    names = [*params.noise.photographs, *params.noise.held_out.images]
    return {name: held_out_source(name) for name in names}


def _digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def test_no_evaluation_photograph_is_among_its_training_frames() -> None:
    """Each evaluation photograph made into frames as a still folder would make it (copied:
    centre crop and resize to extract.size; tiled: the wallpapers' grid): none of those pixels
    is a training frame of any source on the card."""
    params = load_params(PROJECT_ROOT / "params.yaml")
    trained = {
        digest for digests in pretrained_card()["training_frames"].values() for digest in digests
    }
    assert len(trained) > 400
    size = params.extract.size
    for name, image in _evaluation_photographs(params).items():
        frames = [centre_crop_resize(image, size), *(tile for _, _, tile in tiles(image, size))]
        assert not {_digest(frame) for frame in frames} & trained, name


def test_its_card_lists_every_photograph_and_none_is_an_evaluation_file() -> None:
    """card.json's photographs: one record per photograph of each still folder trained on
    (package, path, licence, SHA-256), and no file is one the evaluation sets come from (every
    image scikit-image ships, and matplotlib's and Debian's grace_hopper.jpg)."""
    card = pretrained_card()
    records = card["photographs"]
    folders = {record["folder"] for record in records}
    assert folders == {source["name"] for source in card["training_data"]} - {
        *load_params(PROJECT_ROOT / "params.yaml").samples.videos,
        "dead_leaves",
    }
    for folder in folders:
        frames = len(card["training_frames"][folder])
        mine = [record for record in records if record["folder"] == folder]
        assert frames == sum(record.get("tiles", 1) for record in mine), folder
    for record in records:
        assert record["package"] and record["path"] and record["licence"], record
        assert len(record["sha256"]) == 64
    from matplotlib import cbook
    from skimage import data

    evaluation_files = [
        *(path for path in Path(data.__file__).parent.rglob("*") if path.is_file()),
        Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
        *DEBIAN_MATPLOTLIB_DATA.glob("grace_hopper*"),
    ]
    evaluation = {file_sha256(path) for path in evaluation_files}
    assert not {record["sha256"] for record in records} & evaluation
    assert not any("hopper" in record["path"].lower() for record in records)


def _apply(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "noisy.png"), image)
    return subprocess.run(
        [sys.executable, "-m", "denoise", "apply", "noisy.png", "-o", "out", *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}",
        },
    )


def test_apply_uses_the_shipped_model_until_a_champion_exists(tmp_path: Path) -> None:
    result = _apply(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "using the shipped pretrained model" in result.stderr
    assert (tmp_path / "out" / "noisy.png").is_file()
    asked = _apply(tmp_path, "--model", "pretrained")
    assert asked.returncode == 0, asked.stderr
    assert "using the shipped" not in asked.stderr
    assert str(PRETRAINED_MODEL) in asked.stdout
