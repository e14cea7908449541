"""The pipeline against a real `mlflow server` (SQLite backend) on loopback, through `dvc repro`.

Checks through MlflowClient what a user compares in the UI: a bare `dvc repro` logs one flat
run per stage, tagged with the stage and the commit, with the trained models and the baselines
as child runs; every parameter, per-epoch metrics and sample images, lineage tags and
datasets, a registered version with the `champion` alias; then a weaker model becomes
`challenger` and the champion stays where it was. Each test records what it needs itself, so
they pass alone and in any order.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import tiny_params
from repository import build_repository, commit, sh
from servers import start_mlflow_server, stop

from denoise.tracking.aliases import Decision, decide
from denoise.tracking.views import experiment_link
from denoise.training.settings import with_active
from flows.pipeline import champion_moves
from flows.stages import read_stages

pytestmark = pytest.mark.slow
EXPERIMENT = "denoise"
MODEL_NAME = "denoise"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, process = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield url
    stop(process)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tracked") / "repo"
    params = tiny_params(root)
    # One model keeps the run short; the tiny models cannot beat the noisy input, so the
    # results gate's margin is lowered in tiny_params.
    # System metrics sampled often enough to land in a training run of a few seconds.
    params = dataclasses.replace(
        params,
        train=with_active(params.train, models=["paper_cae"], epochs=3),
        evaluate=dataclasses.replace(params.evaluate, methods=["noisy", "blur"]),
        tracking=dataclasses.replace(params.tracking, system_metrics_seconds=0.5),
    )
    return build_repository(root, params)


def _client(url: str):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def _repro(root: Path, url: str) -> None:
    sh("dvc", "repro", cwd=root, env={"MLFLOW_TRACKING_URI": url})


def _lock_md5(root: Path, stage: str, path: str) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage]
    return str(next(out["md5"] for out in lock["outs"] if out["path"] == path))


@dataclasses.dataclass(frozen=True)
class FirstRun:
    runs: list  # type: ignore[type-arg]
    commit: str
    raw_md5: str
    frames_md5: str


@pytest.fixture(scope="module")
def first_run(server: str, repository: Path) -> FirstRun:
    """The runs of the repository's first `dvc repro`, its commit and data hashes."""
    _repro(repository, server)
    experiment = _client(server).get_experiment_by_name(EXPERIMENT)
    return FirstRun(
        list(_client(server).search_runs([experiment.experiment_id])),
        sh("git", "rev-parse", "HEAD", cwd=repository).stdout.strip(),
        yaml.safe_load((repository / "data/raw.dvc").read_text())["outs"][0]["md5"],
        _lock_md5(repository, "extract", "data/frames"),
    )


def test_a_pipeline_run_is_tracked_and_registered(
    server: str,
    repository: Path,
    first_run: FirstRun,
) -> None:
    client = _client(server)
    runs, head = first_run.runs, first_run.commit
    flat = {
        run.data.tags["denoise.stage"]: run
        for run in runs
        if "mlflow.parentRunId" not in run.data.tags
    }
    stages = read_stages(repository).expand(["paper_cae"])  # the one model these params train
    # preflight checks the tracking server before anything logs; it opens no run.
    assert set(flat) == set(stages) - {"preflight"}, "one flat run per stage"
    for stage, run in flat.items():
        assert run.data.tags[f"denoise.stage.{stage.replace('@', '/')}"] == "ran"
        assert run.data.tags["git.commit"] == head
        assert run.info.status == "FINISHED"
    children = {
        run.data.tags.get("denoise.model") or run.info.run_name: run
        for run in runs
        if run.data.tags.get("mlflow.parentRunId")
        in (flat["train@paper_cae"].info.run_id, flat["evaluate"].info.run_id)
    }
    assert {"paper_cae", "baselines"} <= set(children)
    assert children["paper_cae"].info.run_name == "paper_cae: from scratch"
    # Evaluate logs its scores into the training run without reopening it: the run's
    # duration stays its own work.
    assert children["paper_cae"].info.end_time <= flat["evaluate"].info.start_time

    trained = children["paper_cae"]
    assert trained.data.params["train.active.epochs"] == "3"
    assert trained.data.params["train.profiles.quick.epochs"] == "3"
    assert trained.data.params["noise.validation_sigma"] == "25.0"
    for metric in ("loss", "val_loss", "val_psnr", "val_ssim"):
        history = client.get_metric_history(trained.info.run_id, metric)
        assert [point.step for point in history] == [1, 2, 3], metric
    assert trained.data.metrics["test_psnr"] > 0 and "photos_ssim" in trained.data.metrics
    assert len([key for key in trained.data.metrics if not key.startswith("system/")]) <= 12
    assert "system/cpu_utilization_percentage" in trained.data.metrics
    assert "system/system_memory_usage_megabytes" in trained.data.metrics
    images = [item.path for item in client.list_artifacts(trained.info.run_id, "images")]
    for step in (1, 2, 3):
        assert any(
            path.startswith(f"images/validation-frame-0+step+{step}+") and path.endswith(".png")
            for path in images
        ), images
    raw_md5, frames_md5 = first_run.raw_md5, first_run.frames_md5
    assert trained.data.tags["git.commit"] == head
    assert trained.data.tags["dvc.raw.md5"] == raw_md5
    assert trained.data.tags["dvc.frames.md5"] == frames_md5
    datasets = {item.dataset.name: item.dataset for item in trained.inputs.dataset_inputs}
    assert datasets["frames"].digest == frames_md5
    assert datasets["raw-videos"].digest == raw_md5
    assert "blur.test_psnr" in children["baselines"].data.metrics

    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.run_id == trained.info.run_id
    assert champion.tags["denoise.decision"] == "champion"
    assert float(champion.tags["denoise.score_psnr"]) > 0


def test_a_weaker_model_becomes_challenger(
    server: str,
    repository: Path,
    first_run: FirstRun,
) -> None:
    client = _client(server)
    champion_before = client.get_model_version_by_alias(MODEL_NAME, "champion")
    params = yaml.safe_load((repository / "params.yaml").read_text())
    params["train"]["profiles"]["quick"].update(epochs=1, steps_per_epoch=1)  # far less training
    (repository / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit(repository, "train for one step")
    _repro(repository, server)
    challenger = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.version == champion_before.version
    assert challenger.version != champion.version
    assert float(challenger.tags["denoise.score_psnr"]) < float(
        challenger.tags["denoise.champion_psnr"]
    )
    assert challenger.tags["denoise.decision"] == "challenger"
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    assert {version.version for version in versions} == {champion.version, challenger.version}


def test_models_trained_against_another_store_are_logged_there_and_registered(
    repository: Path, server: str, tmp_path: Path
) -> None:
    """A copy whose models were trained against the server (a clone that pulled them) logs
    to a store of its own: register logs each model anew from its .keras file, tagged with
    the run that trained it, and registers that."""
    import json
    import shutil

    _repro(repository, server)
    copy = tmp_path / "copy"
    shutil.copytree(repository, copy, symlinks=True)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    result = sh("denoise", "register", cwd=copy, env={"MLFLOW_TRACKING_URI": other})
    assert "Traceback" not in result.stderr
    client = _client(other)
    version = client.get_model_version_by_alias(MODEL_NAME, "champion")
    trained = json.loads((copy / "models" / "paper_cae.json").read_text())["mlflow_run_id"]
    assert client.get_run(version.run_id).data.tags["denoise.trained_run"] == trained
    assert version.run_id != trained


def test_the_flow_announces_each_registered_models_champion_move_once() -> None:
    """Image and video models are registered apart: a move of either is announced, and a
    version that already was the champion (the other group) moved nothing."""

    def decision(registered: str, model: str, version: str, champion: str | None) -> dict:
        alias, reason = decide(30.0, True, version, champion, 29.0 if champion else None, 0.1)
        return dataclasses.asdict(
            Decision(registered, model, version, 30.0, champion, 29.0, alias, reason)
        )

    image_move = decision("denoise", "drunet", "3", "2")
    video_stays = decision("denoise-video", "fastdvdnet", "1", "1")
    assert video_stays["alias"] == "champion"
    assert champion_moves([image_move, video_stays]) == {"denoise": image_move}
    video_move = decision("denoise-video", "fastdvdnet", "2", "1")
    moves = champion_moves([image_move, video_stays, video_move])
    assert moves == {"denoise": image_move, "denoise-video": video_move}
    # A former champion whose training run is registered again was decided earlier: no move.
    former = {**decision("denoise", "dncnn", "1", "3"), "alias": "champion", "earlier": True}
    assert champion_moves([image_move, former]) == {"denoise": image_move}


def _browser():  # type: ignore[no-untyped-def]
    """Debian's headless Chromium driven by selenium (make test installs chromium-driver)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("chromium or chromedriver not installed (make test installs both)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,900"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))


def test_the_ui_opens_on_the_runs_with_metric_columns_and_the_champion(
    server: str, first_run: FirstRun
) -> None:
    """What a person sees following the link `denoise ui` prints: the runs table in the
    model-training view with the headline metrics as columns, and the registry's champion."""
    from selenium.webdriver.support.ui import WebDriverWait

    experiment = _client(server).get_experiment_by_name(EXPERIMENT)
    driver = _browser()

    def page() -> str:
        return str(driver.find_element("tag name", "body").text)

    try:
        driver.get(experiment_link(server, experiment.experiment_id))
        # Loaded: the flat runs are listed by name, with the metric columns of the view.
        WebDriverWait(driver, 180).until(lambda _: "register:" in page())
        WebDriverWait(driver, 60).until(lambda _: "champion.test_psnr" in page())
        shown = page()
        assert "Traces 0" not in shown and "Model training" in shown
        champion = _client(server).get_model_version_by_alias(MODEL_NAME, "champion")
        driver.get(f"{server}/#/models/{MODEL_NAME}")
        WebDriverWait(driver, 180).until(lambda _: "@ champion" in page())
        assert f"Version {champion.version}" in page()
    finally:
        driver.quit()
