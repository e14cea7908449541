"""The model shipped with the package: a blind DRUNet that `init_from: pretrained` fine-tunes
and `denoise apply` serves before any champion is registered.

Its card (MODEL_CARD.md, and card.json as data) beside it records how it was trained, on
which frames (each frame's SHA-256, so a test can show none is a validation or test frame),
the data's licences, and its scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from denoise.core.errors import ModelError

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PRETRAINED_MODEL = PRETRAINED_DIR / "drunet_light.keras"
PRETRAINED_CARD = PRETRAINED_DIR / "card.json"


def pretrained_model_path() -> Path:
    """The shipped .keras file, or ModelError when this installation lacks it."""
    if not PRETRAINED_MODEL.is_file():
        raise ModelError(f"{PRETRAINED_MODEL}: the shipped pretrained model is missing")
    return PRETRAINED_MODEL


def pretrained_card() -> dict[str, Any]:
    """The shipped model's card as data: recipe, training frames, scores."""
    card: dict[str, Any] = json.loads(PRETRAINED_CARD.read_text())
    return card
