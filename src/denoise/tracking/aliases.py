"""The model registry's aliases: which version a register run makes `champion`, and which
one `challenger` points at. A version is decided once, when it is registered; its tags and
its description record the decision. Promotion is a pure decision (should_promote, decide);
the rest reads and moves aliases through MLflow's client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable
from typing import Any

from denoise.serving.load import ALREADY_CHAMPION, CHALLENGER, CHAMPION
from denoise.tracking.models import logged_model_uri

# Model version tags: what register decided for a version, once, when it was registered.
MODEL_TAG, SCORE_TAG, SET_TAG = "denoise.model", "denoise.score_psnr", "denoise.score_set"
CHAMPION_SCORE_TAG, DECISION_TAG = "denoise.champion_psnr", "denoise.decision"
REASON_TAG, REJECTED = "denoise.reason", "rejected"
# Which rule decided (RULE_TAG): PSNR on the clean score set, or, when the run has noisy
# sources, the held-out frame-to-frame loss on them (dB) with a guard on the clean set.
RULE_TAG, RULE_PSNR, RULE_FRAME_TO_FRAME = "denoise.rule", "psnr", "frame_to_frame"
FRAME_TO_FRAME_TAG = "denoise.score_frame_to_frame_db"
CHAMPION_FRAME_TO_FRAME_TAG = "denoise.champion_frame_to_frame_db"


def should_promote(candidate: float, champion: float | None, margin: float) -> bool:
    """Whether a candidate scoring `candidate` dB replaces a champion scoring `champion` dB."""
    if not math.isfinite(candidate):
        return False
    return champion is None or candidate >= champion + margin


def decide(
    score: float,
    eligible: bool,
    version: str,
    champion_version: str | None,
    champion_score: float | None,
    margin: float,
) -> tuple[str | None, str]:
    """The alias a new version gets (champion, challenger, or None when rejected), and why."""
    if champion_version == version:
        return CHAMPION, ALREADY_CHAMPION
    if not eligible:
        return None, "rejected: does not beat the noisy input by validate.results' margin"
    if should_promote(score, champion_score, margin):
        if champion_score is None:
            return CHAMPION, "first champion"
        return CHAMPION, f"beats champion v{champion_version} by {score - champion_score:.3f} dB"
    gap = score - champion_score if champion_score is not None else float("nan")
    return CHALLENGER, f"{gap:+.3f} dB against champion v{champion_version}, margin {margin} dB"


@dataclasses.dataclass(frozen=True)
class Scores:
    """A candidate's and the champion's scores on the same frames: PSNR (dB) on the clean score
    set, and the held-out frame-to-frame loss in dB on the noisy sources (evaluation.
    frame_to_frame; higher is better). The champion's are None when there is none."""

    psnr: float
    frame_to_frame: float
    champion_psnr: float | None
    champion_frame_to_frame: float | None


def decide_on_noisy(
    scores: Scores,
    eligible: bool,
    version: str,
    champion_version: str | None,
    margin: float,
    guard: float,
) -> tuple[str | None, str]:
    """decide's rule for a run with noisy sources: champion when the candidate beats the
    champion's held-out frame-to-frame loss by margin dB and loses at most guard dB of PSNR on
    the clean score set; challenger otherwise; None when it fails the results checks."""
    if champion_version == version:
        return CHAMPION, ALREADY_CHAMPION
    if not eligible:
        return None, "rejected: does not beat the noisy input by validate.results' margin"
    champion, clean = scores.champion_frame_to_frame, scores.champion_psnr
    if clean is not None and scores.psnr < clean - guard:
        return CHALLENGER, (
            f"loses {clean - scores.psnr:.3f} dB PSNR on the clean set to champion "
            f"v{champion_version}, more than the guard {guard} dB"
        )
    if should_promote(scores.frame_to_frame, champion, margin):
        if champion is None:
            return CHAMPION, "first champion (frame-to-frame on the noisy sources)"
        return CHAMPION, (
            f"beats champion v{champion_version} by {scores.frame_to_frame - champion:.3f} dB "
            "frame-to-frame on the noisy sources' held-out frames"
        )
    gap = scores.frame_to_frame - champion if champion is not None else float("nan")
    return CHALLENGER, (
        f"{gap:+.3f} dB frame-to-frame against champion v{champion_version}, margin {margin} dB"
    )


@dataclasses.dataclass(frozen=True)
class Decision:
    registered_model: str  # register.model_name, or register.video_model_name (temporal)
    model: str
    version: str
    score: float
    champion_version: str | None
    champion_score: float | None
    alias: str | None  # champion, challenger or None: what the version was decided, once
    reason: str
    holds: str | None = None  # the alias the version holds after this stage ran
    earlier: bool = False  # decided when an earlier register run registered it, not now
    rule: str = RULE_PSNR  # which rule decided: RULE_PSNR or RULE_FRAME_TO_FRAME
    frame_to_frame: float | None = None  # dB on the noisy sources' held-out frames (that rule)
    champion_frame_to_frame: float | None = None


def registered_version(client: Any, name: str, run_id: str) -> Any:
    """The version registered from this training run, registering it on first sight."""
    import mlflow

    for version in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        return version
    return mlflow.register_model(logged_model_uri(run_id), name)


def earlier_decision(version: Any, champion_version: str | None) -> Decision | None:
    """The decision recorded on a version when it was registered, or None if it has none."""
    tags = version.tags or {}
    if DECISION_TAG not in tags:
        return None
    decided = tags[DECISION_TAG]
    alias = None if decided == REJECTED else decided
    number = str(version.version)
    return Decision(
        registered_model=version.name,
        model=tags.get(MODEL_TAG, ""),
        version=number,
        score=float(tags.get(SCORE_TAG) or "nan"),
        champion_version=champion_version,
        champion_score=float(tags[CHAMPION_SCORE_TAG]) if tags.get(CHAMPION_SCORE_TAG) else None,
        alias=CHAMPION if number == champion_version else alias,
        reason=(
            ALREADY_CHAMPION
            if number == champion_version
            else f"decided when registered: {tags.get(REASON_TAG, decided)}"
        ),
        earlier=True,
        rule=tags.get(RULE_TAG, RULE_PSNR),
        frame_to_frame=_optional(tags.get(FRAME_TO_FRAME_TAG)),
        champion_frame_to_frame=_optional(tags.get(CHAMPION_FRAME_TO_FRAME_TAG)),
    )


def _optional(tag: str | None) -> float | None:
    return float(tag) if tag else None


def best_challenger(versions: Iterable[Any], champion_version: str | None, scored_on: str) -> Any:
    """The version `challenger` points at: of those that passed the results checks when they
    were registered (decided champion or challenger) and scored on `scored_on`, the best scoring
    one that is not the champion (ties: the newest); None when there is none."""
    candidates = [
        version
        for version in versions
        if (version.tags or {}).get(DECISION_TAG) in (CHAMPION, CHALLENGER)
        and version.tags.get(SET_TAG) == scored_on
        and str(version.version) != champion_version
        and math.isfinite(float(version.tags.get(SCORE_TAG) or "nan"))
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda v: (float(v.tags[SCORE_TAG]), int(v.version)))


def point_challenger(client: Any, name: str, scored_on: str) -> str | None:
    """Move `challenger` to best_challenger's version, or remove it; return that version."""
    from mlflow.exceptions import MlflowException

    champion = champion_of(client, name)
    champion_version = None if champion is None else str(champion.version)
    best = best_challenger(
        client.search_model_versions(f"name='{name}'"), champion_version, scored_on
    )
    if best is not None:
        client.set_registered_model_alias(name, CHALLENGER, best.version)
        return str(best.version)
    with contextlib.suppress(MlflowException):  # it had none
        client.delete_registered_model_alias(name, CHALLENGER)
    return None


def description(decision: Decision, scored_on: str) -> str:
    """One line for the registry page: model, score(s), set and decision."""
    held_out = (
        f", {decision.frame_to_frame:.2f} dB frame-to-frame on the noisy sources"
        if decision.frame_to_frame is not None
        else ""
    )
    return (
        f"{decision.model}: {decision.score:.2f} dB PSNR on {scored_on}{held_out}; "
        f"{decision.alias or REJECTED} ({decision.reason})"
    )


def champion_of(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
