"""A run with footage that has no clean copy, end to end through the real chain: `denoise run`
(the Prefect flow) -> `dvc repro --single-item` -> `denoise <stage>`.

A tiny git + DVC repository holds a clean video and a `noisy` one (extract.roles), and trains
one model of supervision noisy: frame-to-frame on the noisy video's clips, its epochs chosen on
the held-out frame-to-frame loss, registered on that loss over the noisy video's test clips.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_params, write_tiny_video
from repository import build_repository, commit, sh

from denoise.core.train_config import Variant
from denoise.training.settings import with_active

pytestmark = pytest.mark.slow
MODEL = "cae_noisy"  # paper_cae learning from the noisy video alone
NOISY_VIDEO = "noisy.avi"


def test_a_noisy_source_trains_registers_and_logs_the_frame_to_frame_loss(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    params = tiny_params(root)
    variants = {**params.train.variants, MODEL: Variant("paper_cae", supervision="noisy")}
    train = dataclasses.replace(params.train, variants=variants, models=[MODEL])
    # Clips of 3 frames: the 12-frame clean video's test block (3 frames) holds one, which
    # the clip evaluation sets need; the noisy video's train, validation and test blocks too.
    clips = dataclasses.replace(params.extract.clips, length=3, per_split=1)
    params = dataclasses.replace(
        params,
        extract=dataclasses.replace(params.extract, roles={NOISY_VIDEO: "noisy"}, clips=clips),
        train=with_active(train, epochs=2, steps_per_epoch=2),
        evaluate=dataclasses.replace(params.evaluate, methods=["noisy"]),
    )
    build_repository(root, params)
    write_tiny_video(root / "data" / "raw" / NOISY_VIDEO, num_frames=24, seed=3)
    sh("dvc", "add", "-q", "data/raw", cwd=root)
    commit(root, "a noisy video")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": store, "PREFECT_HOME": str(tmp_path / "prefect-home")}

    result = sh("denoise", "run", cwd=root, env=env)
    assert "champion: denoise v1" in result.stdout, result.stdout

    # The noisy video is learnt from, never a reference a score is measured against.
    manifest = pd.read_parquet(root / "data" / "frames" / "manifest.parquet")
    assert set(manifest.loc[manifest["video"] == NOISY_VIDEO, "role"]) == {"noisy"}
    index = json.loads((root / "data" / "evalsets" / "index.json").read_text())
    scored = [image for entry in index["sets"].values() for image in entry["images"]]
    scored += [clip for entry in index["clip_sets"].values() for clip in entry["images"]]
    assert scored and not [name for name in scored if name.startswith(NOISY_VIDEO)]
    summary = json.loads((root / "models" / f"{MODEL}.json").read_text())
    assert summary["supervision"] == "noisy" and summary["noise"] is None
    assert summary["val_frame_to_frame"] == summary["val_loss"] > 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store, registry_uri=store)
    # The training run logs the held-out frame-to-frame loss every epoch.
    history = client.get_metric_history(summary["mlflow_run_id"], "val_frame_to_frame")
    assert [point.step for point in history] == [1, 2]
    assert all(point.value > 0 for point in history)
    # Registered on the noisy video's held-out frames, and the version says which rule decided.
    champion = client.get_model_version_by_alias("denoise", "champion")
    assert champion.tags["denoise.rule"] == "frame_to_frame"
    assert math.isfinite(float(champion.tags["denoise.score_frame_to_frame_db"]))
    registry = json.loads((root / "reports" / "registry.json").read_text())
    (decision,) = registry["decisions"]
    assert decision["model"] == MODEL and decision["alias"] == "champion"
