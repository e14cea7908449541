"""The README's run on the real sample videos, with the project's own params.yaml: the champion
it registers is a real denoiser, at least NLM + 1 dB at sigma 25 and not below NLM at 15 and 50,
on the test frames and on the photographs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT
from repository import COPIED_FILES, COPIED_FOLDERS, commit, sh

from denoise.core.config import load_params
from denoise.data.samples import find_sample

pytestmark = pytest.mark.slow
HEADLINE_MARGIN_DB = 1.0


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repository of the project with its own params.yaml and the sample videos,
    after `denoise run`."""
    params = load_params(PROJECT_ROOT / "params.yaml")
    if any(find_sample(name) is None for name in params.samples.videos):
        pytest.skip("Debian's opencv-doc sample videos are not installed (make test installs them)")
    root = tmp_path_factory.mktemp("default-run") / "project"
    root.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", "config", "user.email", "ci@example.invalid", cwd=root)
    sh("git", "config", "user.name", "CI", cwd=root)
    sh("dvc", "init", "-q", cwd=root)
    for name in (*COPIED_FILES, "params.yaml"):
        if (PROJECT_ROOT / name).is_file():
            shutil.copy(PROJECT_ROOT / name, root / name)
    for name in COPIED_FOLDERS:
        shutil.copytree(
            PROJECT_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    sh("denoise", "samples", cwd=root)
    sh("dvc", "add", "-q", "data/raw", cwd=root)
    commit(root, "the project with its sample videos")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "PREFECT_HOME": str(root.parent / "prefect"),
    }
    sh("denoise", "run", cwd=root, timeout=2400, env=env)
    return root


def test_the_champion_beats_nlm_by_a_decibel_at_sigma_25(default_run: Path) -> None:
    registry = json.loads((default_run / "reports" / "registry.json").read_text())
    (champion,) = [
        decision["model"] for decision in registry["decisions"] if decision["alias"] == "champion"
    ]
    metrics = json.loads((default_run / "reports" / "metrics.json").read_text())
    for set_name in ("test", "photographs"):
        levels = metrics["sets"][set_name]["levels"]
        at_25 = levels["gaussian-25"]
        assert at_25[champion]["psnr"] >= at_25["nlm"]["psnr"] + HEADLINE_MARGIN_DB, (
            set_name,
            at_25[champion]["psnr"],
            at_25["nlm"]["psnr"],
        )
        for level in ("gaussian-15", "gaussian-50"):
            assert levels[level][champion]["psnr"] >= levels[level]["nlm"]["psnr"], (
                set_name,
                level,
            )


def test_the_paper_comparison_is_still_reported(default_run: Path) -> None:
    metrics = json.loads((default_run / "reports" / "metrics.json").read_text())
    at_25 = metrics["sets"]["test"]["levels"]["gaussian-25"]
    assert {"paper_cae", "dense_ae", "nlm", "bm3d"} <= set(at_25)
    assert at_25["bm3d"]["images"] == metrics["sets"]["test"]["images"], "BM3D on every image"
