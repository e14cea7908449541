"""The architecture registry: one row per architecture, read by everything that needs one.

Config validation (known names, size rules), model building (denoise.models.build), the CLI
(`denoise model-summary`) and the tests all ask this table; none keeps a list of its own. A new
architecture is a module under denoise.models with a `build(train, spec, input_size)` function
and one row here. The builder is named by its module rather than held as a function because
config validation must not import Keras; denoise.models.build imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Architecture:
    """module: denoise.models.<module> builds it. side_multiple(spec): frames and patches must
    be multiples of this (spec: the model's resolved train_config.Variant). size_rule(train,
    patch_size): a message when the train section's sizes cannot work, else None.
    window(spec): frames per output frame; above 1 a temporal model, whose input is that many
    consecutive frames stacked on the channel axis (oldest first) and whose output is the
    middle one denoised."""

    module: str
    summary: str
    side_multiple: Callable[[Any], int] = lambda spec: 1
    size_rule: Callable[[Any, int], str | None] = lambda train, patch_size: None
    window: Callable[[Any], int] = lambda spec: 1


def _dense_ae_rule(train: Any, patch_size: int) -> str | None:
    if (patch_size - train.dense_patch) % train.dense_stride:
        return "patch_size - dense_patch must be a multiple of dense_stride"
    return None


ARCHITECTURES: dict[str, Architecture] = {
    "paper_cae": Architecture(
        "paper_cae", "the paper's convolutional autoencoder", side_multiple=lambda spec: 4
    ),
    "dense_ae": Architecture(
        "dense_ae", "a Dense autoencoder on overlapping patches", size_rule=_dense_ae_rule
    ),
    "dncnn": Architecture("dncnn", "DnCNN: residual 3x3 convolutions"),
    "ffdnet": Architecture(
        "ffdnet", "FFDNet-style: DnCNN on 2x2-packed pixels", side_multiple=lambda spec: 2
    ),
    "drunet": Architecture(
        "drunet", "a DRUNet-style residual U-Net", side_multiple=lambda spec: spec.drunet.multiple
    ),
    "fastdvdnet": Architecture(
        "fastdvdnet",
        "FastDVDnet-style video denoiser: U-Nets on frame triplets, then on their outputs",
        side_multiple=lambda spec: spec.fastdvdnet.multiple,
        window=lambda spec: spec.fastdvdnet.window,
    ),
}
