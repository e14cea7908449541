"""bench/warm_start.py: first, from scratch and warm-started trainings, scored on one test set."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT, write_params, write_tiny_video
from repository import relative_params

from denoise.core.config import Params


def test_compares_a_warm_retrain_with_training_from_scratch(params: Params, tmp_path: Path) -> None:
    raw = tmp_path / "videos"
    raw.mkdir()
    for name, seed in (("a.avi", 1), ("b.avi", 2), ("c.avi", 3)):
        write_tiny_video(raw / name, num_frames=16, seed=seed)
    # The bench trains on the cpu profile: its patches shrunk to fit the tiny frames.
    profiles = params.train.profiles
    cpu = dataclasses.replace(profiles["cpu"], patch_size=16)
    train = dataclasses.replace(params.train, profiles={**profiles, "cpu": cpu})
    params = dataclasses.replace(params, train=train)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "bench" / "warm_start.py"),
            "--params",
            str(write_params(relative_params(params, tmp_path), tmp_path / "params.yaml")),
            "--raw",
            str(raw),
            "--first",
            "a.avi",
            "b.avi",
            "--added",
            "c.avi",
            "--model",
            "paper_cae",
            "--epochs",
            "4",
            "--steps-per-epoch",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "warm_start.json").read_text())
    runs = report["runs"]
    assert runs["first"]["steps"] == runs["scratch"]["steps"] == 8
    assert runs["warm"]["steps"] == 2, "a quarter of the steps"
    assert runs["warm"]["learning_rate"] == 1e-4 < runs["scratch"]["learning_rate"]
    assert runs["scratch"]["train_frames"] > runs["first"]["train_frames"]
    assert set(report["psnr"]) == {"first", "scratch", "warm", "nlm"}
    assert "| warm |" in result.stdout
