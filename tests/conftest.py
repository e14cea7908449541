"""Fixtures: tiny synthetic videos written with OpenCV and params shrunk to match."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from denoise.core import runtime
from denoise.core.config import Params, load_params, params_to_dict
from denoise.core.train_config import Train
from denoise.training.settings import with_active

runtime.configure()  # before any test imports keras: TensorFlow as `denoise` runs it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The models tiny_params trains: the paper's two, from scratch.
TINY_MODELS = ["paper_cae", "dense_ae"]
# The modules that take minutes (whole pipelines, servers), longest first. `make test` runs
# modules on two workers (pytest-xdist, --dist loadfile): these start first, so that both
# workers finish at about the same time.
LONG_MODULES = (
    "test_pipeline",
    "test_default_run",
    "test_faults",
    "test_team",
    "test_deployment",
    "test_mlflow",
    "test_noisy_run",
    "test_profiles",
    "test_train",
    "test_video_model",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long modules first; otherwise pytest-randomly's shuffled order (the sort is stable)."""

    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::")[0].removeprefix("tests/").removesuffix(".py")
        return LONG_MODULES.index(module) if module in LONG_MODULES else len(LONG_MODULES)

    items.sort(key=rank)


def tiny_clip_params(root: Path, fps: float = 8.0) -> Params:
    """tiny_params with an 80-frame (10 s at 8 fps) video under paths.raw, every third frame
    sampled, and two 6-frame clips per split."""
    config = tiny_params(root)
    extract = dataclasses.replace(
        config.extract,
        frame_stride=3,
        split=dataclasses.replace(config.extract.split, gap_seconds=1.0),
        clips=dataclasses.replace(config.extract.clips, length=6, per_split=2),
    )
    raw = Path(config.paths.raw)
    raw.mkdir(parents=True)
    write_tiny_video(raw / "long.avi", num_frames=80, fps=fps)
    return dataclasses.replace(config, extract=extract)


def write_tiny_video(
    path: Path,
    num_frames: int = 12,
    size: int = 32,
    fps: float = 4.0,
    colour: bool = True,
    seed: int = 0,
) -> Path:
    """A num_frames x size x size MJPG video: a red left edge, a moving square, a gradient.

    Pixel (row, col) of frame k is RGB; the left quarter is pure red so channel order can be
    checked after decoding.
    """
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (size, size), isColor=colour
    )
    assert writer.isOpened()
    rows, cols = np.mgrid[0:size, 0:size]
    for index in range(num_frames):
        rgb = np.zeros((size, size, 3), np.uint8)
        rgb[..., 1] = (cols * 255 // size).astype(np.uint8)
        rgb[..., 2] = (rows * 255 // size).astype(np.uint8)
        top = (index * 2) % (size // 2)
        rgb[top : top + size // 4, size // 2 : size // 2 + size // 4] = rng.integers(0, 255, 3)
        rgb[:, : size // 4] = (255, 0, 0)
        if colour:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        else:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    writer.release()
    return path


def write_dark_camera_video(path: Path, num_frames: int = 12, size: int = 32) -> Path:
    """A dead camera: MJPG frames of the darkest grey levels with sensor noise and a faint red
    cast (mean about 0.01, std about 0.014). A video of exact zeros has equal channels, which
    extract refuses as greyscale before any data check could see it."""
    rng = np.random.default_rng(1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 4.0, (size, size))
    assert writer.isOpened()
    for _ in range(num_frames):
        rgb = rng.integers(0, 3, (size, size, 3), dtype=np.uint8)
        rgb[..., 0] += 8
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def with_settings(train: Train, **settings: Any) -> Train:
    """`train` with these architectures' settings (train.architectures.<name>) replaced."""
    return dataclasses.replace(train, architectures={**train.architectures, **settings})


def project_values(changes: dict[str, Any]) -> dict[str, Any]:
    """The project's params.yaml mapping with `changes` merged in, section by section."""

    def merge(into: dict[str, Any], changed: dict[str, Any]) -> None:
        for key, value in changed.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    values = copy.deepcopy(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text()))
    merge(values, changes)
    return values


def tiny_params(root: Path) -> Params:
    """Default params shrunk for 32x32 videos, every path under root."""
    params = load_params(PROJECT_ROOT / "params.yaml")
    paths = {
        field.name: str(root / getattr(params.paths, field.name))
        for field in dataclasses.fields(params.paths)
    }
    extract = dataclasses.replace(
        params.extract,
        size=32,
        frame_stride=1,
        split=dataclasses.replace(
            params.extract.split, validation_fraction=0.25, test_fraction=0.25, gap_seconds=0.0
        ),
    )
    # No held-out set (tests/test_noise.py builds one): the tiny run keeps its two photographs.
    noise = dataclasses.replace(
        params.noise,
        max_frames=3,
        photographs=["astronaut", "coffee"],
        photograph_size=32,
        held_out=dataclasses.replace(params.noise.held_out, crops=0),
    )
    # The paper's two models, from scratch: tests/test_init.py covers starting weights.
    train = with_active(
        params.train,
        models=TINY_MODELS,
        per_model={},
        patch_size=16,
        batch_size=4,
        epochs=2,
        steps_per_epoch=4,
    )
    evaluate = dataclasses.replace(params.evaluate, bm3d_max_images=1, num_triptychs=1)
    # Tiny clips are short, and tiny models cannot beat the noisy input: tests/test_checks.py
    # checks the promotion gate itself with its own margin.
    validate = dataclasses.replace(
        params.validate,
        frames=dataclasses.replace(params.validate.frames, min_frames_per_video=6),
        results=dataclasses.replace(params.validate.results, min_gain_over_noisy_db=-100.0),
    )
    return dataclasses.replace(
        params,
        recipes={},  # the project's are for its 200-pixel frames
        paths=type(params.paths)(**paths),
        extract=extract,
        noise=noise,
        validate=validate,
        train=train,
        evaluate=evaluate,
    )


def write_params(params: Params, path: Path) -> Path:
    path.write_text(yaml.safe_dump(params_to_dict(params), sort_keys=False))
    return path


@pytest.fixture(scope="session", autouse=True)
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Stages log to MLflow: point every test (and its subprocesses) at a throwaway store."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="session", autouse=True)
def cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """apply's OpenVINO copies (apply.converted_dir, under XDG_CACHE_HOME) go to a throwaway
    folder, for every test and its subprocesses: test models would pile up in the user's."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture
def quick_model(tmp_path: Path) -> Path:
    """An untrained paper_cae saved as .keras: for tests of apply's reading and writing, not
    its denoising."""
    from denoise.core.config import default_params
    from denoise.models.build import build_model

    path = tmp_path / "paper_cae.keras"
    build_model("paper_cae", default_params().train).save(path)
    return path


@pytest.fixture
def params(tmp_path: Path) -> Params:
    """Tiny params with one 12-frame 32x32 colour video in paths.raw."""
    config = tiny_params(tmp_path)
    raw = Path(config.paths.raw)
    raw.mkdir(parents=True)
    write_tiny_video(raw / "tiny.avi")
    return config
