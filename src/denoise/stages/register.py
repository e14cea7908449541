"""register stage: every trained model becomes a version of a registered model: an image
model of params.register.model_name, a temporal one of register.video_model_name.

The alias `champion` of each moves to a version only if it beats that model's champion on the
same fixed evaluation set (image models: params.register.score_set; temporal ones: the test
clips, every frame from its window) at noise.validation_sigma by at least
params.register.promotion_margin_db; both are scored here, through the same tiled pyfunc that
users load, so the comparison never mixes data or code versions. A version is decided once,
when it is registered (its tags and description record the decision); registering the same
training run again reports that decision and redoes nothing. After the new versions are
decided, `challenger` points at the best version that passed the results checks and is not the
champion, scored on the same set, or at nothing.

A run with noisy sources (the manifest's role column) decides its image models by another
rule (tracking.aliases.decide_on_noisy): on the held-out frame-to-frame loss over those
sources' test clips (evaluation.frame_to_frame; candidate and champion on the same frames) by
register.noisy_margin_db, with a guard: the candidate may lose at most register.clean_guard_db
of PSNR on score_set. The version's tag denoise.rule says which rule decided. Without such
frames (no noisy source, or no test clip of one keeps enough pixels) the PSNR rule decides.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from denoise.core.atomic import write_json
from denoise.core.config import Params
from denoise.core.errors import DataError
from denoise.core.noise import level_name
from denoise.core.noise_level import NOISE_RANGE
from denoise.core.temporal import temporal_windows
from denoise.data.evalsets import CLIP_SETS, CLIP_TEST, load_set
from denoise.evaluation.frame_to_frame import Denoise, held_out_pairs, score_frame_to_frame
from denoise.evaluation.scoring import IDENTITY, psnr_scores
from denoise.evaluation.summary import headline_level, headline_metrics, headline_sets
from denoise.serving.load import CHALLENGER, CHAMPION
from denoise.tracking.aliases import (
    CHAMPION_FRAME_TO_FRAME_TAG,
    CHAMPION_SCORE_TAG,
    DECISION_TAG,
    FRAME_TO_FRAME_TAG,
    MODEL_TAG,
    REASON_TAG,
    REJECTED,
    RULE_FRAME_TO_FRAME,
    RULE_PSNR,
    RULE_TAG,
    SCORE_TAG,
    SET_TAG,
    Decision,
    Scores,
    champion_of,
    decide,
    decide_on_noisy,
    description,
    earlier_decision,
    point_challenger,
    registered_version,
)
from denoise.tracking.models import INIT_TAG, TRAINED_RUN_TAG, log_model_file, logged_model_uri
from denoise.tracking.runs import StageTracker, stage
from denoise.validation.results import check_results


@dataclasses.dataclass(frozen=True)
class RegisterSummary:
    decisions: list[Decision]


def score_model(
    model_uri: str,
    clean: np.ndarray,
    noisy: np.ndarray,
    self_ensemble: bool = False,
    precision: str = "float32",
) -> float:
    """Mean PSNR (dB) of a logged or registered denoiser on one evaluation set, served with or
    without its x8 self-ensemble, in precision (whatever its logged model_config says).

    clean, noisy: float32 (N, H, W, 3) in [0, 1] (noisy unclipped), or for a temporal model
    clips (N, T, H, W, 3): every frame is scored, denoised from the window around it (the
    ends reflected, core.temporal).
    """
    denoise, window = _served(model_uri, self_ensemble, precision)

    def denoise_batch(inputs: np.ndarray, sigma: float) -> np.ndarray:  # sigma: not told
        return denoise(inputs)

    if window == 1:
        scores = psnr_scores(clean, noisy, 0.0, denoise_batch)
    else:  # one clip's windows at a time: memory holds one clip's
        scores = [
            value
            for frames, clip in zip(clean, noisy, strict=True)
            for value in psnr_scores(
                frames,
                np.stack(list(temporal_windows(clip, window // 2))),
                0.0,
                denoise_batch,
            )
        ]
    return float(np.mean(scores))


def _served(model_uri: str, self_ensemble: bool, precision: str) -> tuple[Denoise, int]:
    """A logged or registered denoiser as served (clipped to [0, 1]), and its window."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    served = model.unwrap_python_model()
    served.serve_as(self_ensemble, precision)
    return (lambda inputs: np.clip(model.predict(inputs), 0.0, 1.0)), served.window


def _trained_runs(params: Params) -> dict[str, str]:
    runs = {}
    for name in params.train.models:
        info_path = Path(params.paths.models) / f"{name}.json"
        if not info_path.is_file():
            raise DataError(f"{info_path}: missing; run `denoise train` first")
        run_id = json.loads(info_path.read_text()).get("mlflow_run_id")
        if not run_id:
            raise DataError(f"{info_path}: no MLflow run id; rerun `denoise train`")
        runs[name] = run_id
    return runs


def _in_this_store(tracker: StageTracker, params: Params, runs: dict[str, str]) -> dict[str, str]:
    """Each model's training run in this tracking store. A model trained against another store
    (a clone whose models came from the DVC remote, with a local store of its own) is logged
    anew from its .keras file, in a run tagged with the run that trained it."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    found = {}
    for model, run_id in runs.items():
        try:
            client.get_run(run_id)
            found[model] = run_id
            continue
        except MlflowException:
            pass
        tags = {"denoise.model": model, TRAINED_RUN_TAG: run_id}
        with tracker.child(model, tags=tags) as logged:
            path = Path(params.paths.models) / f"{model}.keras"
            trained = json.loads(path.with_suffix(".json").read_text()).get(NOISE_RANGE)
            log_model_file(params, path, params.train.window(model), trained)
        found[model] = logged
    return found


def _scoring_set(params: Params, temporal: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """(clean, noisy) at noise.validation_sigma that candidates are scored on, and its name:
    the register.score_set images, or for temporal models the test clips."""
    level = level_name("gaussian", params.noise.validation_sigma)
    set_name, group = (CLIP_TEST, CLIP_SETS) if temporal else (params.register.score_set, "sets")
    clean, noisy_levels, _ = load_set(Path(params.paths.evalsets), set_name, group)
    if level not in noisy_levels:
        raise DataError(f"evaluation set {set_name!r} has no level {level}")
    return clean, noisy_levels[level], f"{set_name}/{level}"


def run(params: Params) -> RegisterSummary:
    """Register every trained model; move `champion` or `challenger` as should_promote says.

    Image models are versions of register.model_name, scored on register.score_set; temporal
    models (train.window > 1) of register.video_model_name, scored on the test clips: image
    and video models never compete for one alias.
    """
    metrics_path = Path(params.paths.metrics)
    if not metrics_path.is_file():
        raise DataError(f"{metrics_path}: missing; run `denoise evaluate` first")
    metrics = json.loads(metrics_path.read_text())
    runs = _trained_runs(params)
    config = params.register
    decisions: list[Decision] = []
    with stage(params, "register") as tracker:
        runs = _in_this_store(tracker, params, runs)
        for name, temporal in ((config.model_name, False), (config.video_model_name, True)):
            group = {
                model: run_id
                for model, run_id in runs.items()
                if (params.train.window(model) > 1) == temporal
            }
            if not group:
                continue
            eligible = check_results(
                metrics, params, score_set=params.register.score_set, models=list(group)
            ).eligible
            scoring = _scoring_set(params, temporal)
            held_out = None if temporal else held_out_pairs(params)
            decisions += _register(params, name, group, eligible, *scoring, held_out=held_out)
        summary = RegisterSummary(decisions=decisions)
        headline = _headline(params, summary, metrics)
        tracker.log_to_parent(
            summary=dataclasses.asdict(summary),
            metrics={
                "champion.version" if key == "champion" else f"champion.{key}": value
                for key, value in headline.items()
            },
        )
    write_json(params.paths.registry, dataclasses.asdict(summary))
    write_json(params.paths.summary, headline)
    return summary


def _headline(
    params: Params, summary: RegisterSummary, metrics: dict[str, Any]
) -> dict[str, float]:
    """reports/summary.json: the image champion's few numbers (evaluation.summary)."""
    decisions = [
        dataclasses.asdict(decision)
        for decision in summary.decisions
        if decision.registered_model == params.register.model_name
    ]
    classical = [method for method in params.evaluate.methods if method != IDENTITY]
    return headline_metrics(
        decisions, metrics, headline_sets(params), headline_level(params), classical
    )


def _register(
    params: Params,
    name: str,
    runs: dict[str, str],
    eligible: dict[str, bool],
    clean: np.ndarray,
    noisy: np.ndarray,
    scored_on: str,
    held_out: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Decision]:
    """Register each model's run as a version of `name`, best first, decide each new version
    once (moving `champion` when it wins), then point `challenger` (best_challenger).

    held_out: the noisy sources' held-out (noisy, packed) frame-to-frame pairs
    (evaluation.frame_to_frame); given, decide_on_noisy decides on them, else decide on PSNR.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    serving = (params.apply.self_ensemble, params.apply.precision)  # as `denoise apply` serves
    config = params.register

    def held_out_score(uri: str, pairs: tuple[np.ndarray, np.ndarray]) -> float:
        denoise, _ = _served(uri, *serving)
        return score_frame_to_frame(denoise, *pairs, params.apply.batch_size)

    scores = {
        model: score_model(logged_model_uri(run_id), clean, noisy, *serving)
        for model, run_id in runs.items()
    }
    frame_scores = (
        {model: held_out_score(logged_model_uri(run), held_out) for model, run in runs.items()}
        if held_out is not None
        else {}
    )
    ranking = frame_scores or scores
    decisions = []
    versions: dict[str, str] = {}  # version -> the model of this run it was registered from
    # Best candidate first, so a weaker one from the same run is compared with it.
    for model in sorted(ranking, key=lambda key: -ranking[key]):
        version = registered_version(client, name, runs[model])
        versions[str(version.version)] = model
        champion = champion_of(client, name)
        champion_version = None if champion is None else str(champion.version)
        earlier = earlier_decision(version, champion_version)
        if earlier is not None:
            decisions.append(earlier)
            continue
        champion_score = champion_frames = None
        if champion_version in versions and champion_version != str(version.version):
            # A model of this run, scored above: the same model on the same frames.
            champion_score = scores[versions[champion_version]]
            champion_frames = frame_scores.get(versions[champion_version])
        elif champion_version not in (None, str(version.version)):
            champion_uri = f"models:/{name}@{CHAMPION}"
            champion_score = score_model(champion_uri, clean, noisy, *serving)
            if held_out is not None:  # the same held-out frames as the candidate's
                champion_frames = held_out_score(champion_uri, held_out)
        score, passed, number = scores[model], eligible.get(model, False), str(version.version)
        if held_out is None:
            rule = RULE_PSNR
            alias, reason = decide(
                score, passed, number, champion_version, champion_score, config.promotion_margin_db
            )
        else:
            rule = RULE_FRAME_TO_FRAME
            both = Scores(score, frame_scores[model], champion_score, champion_frames)
            alias, reason = decide_on_noisy(
                both,
                passed,
                number,
                champion_version,
                config.noisy_margin_db,
                config.clean_guard_db,
            )
        if alias == CHAMPION:
            client.set_registered_model_alias(name, alias, version.version)
        decision = Decision(
            registered_model=name,
            model=model,
            version=str(version.version),
            score=score,
            champion_version=champion_version,
            champion_score=champion_score,
            alias=alias,
            reason=reason,
            rule=rule,
            frame_to_frame=frame_scores.get(model),
            champion_frame_to_frame=champion_frames,
        )
        tags = {
            MODEL_TAG: model,
            SCORE_TAG: f"{score:.4f}",
            SET_TAG: scored_on,
            CHAMPION_SCORE_TAG: "" if champion_score is None else f"{champion_score:.4f}",
            REASON_TAG: reason,
            INIT_TAG: client.get_run(runs[model]).data.tags.get(INIT_TAG, ""),
            RULE_TAG: rule,
        }
        if held_out is not None:
            tags[FRAME_TO_FRAME_TAG] = f"{frame_scores[model]:.4f}"
            tags[CHAMPION_FRAME_TO_FRAME_TAG] = (
                "" if champion_frames is None else f"{champion_frames:.4f}"
            )
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        client.update_model_version(name, version.version, description(decision, scored_on))
        # Last: a version with its decision tag is decided; one stopped before it is decided anew.
        client.set_model_version_tag(name, version.version, DECISION_TAG, alias or REJECTED)
        decisions.append(decision)
    challenger = point_challenger(client, name, scored_on)
    champion = champion_of(client, name)
    holders = {challenger: CHALLENGER}
    if champion is not None:
        holders[str(champion.version)] = CHAMPION
    return [dataclasses.replace(entry, holds=holders.get(entry.version)) for entry in decisions]
