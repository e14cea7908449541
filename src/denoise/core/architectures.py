"""The architecture registry: one row per architecture, read by everything that needs one.

Config validation (known names, settings, size rules), model building (denoise.models.build),
the CLI (`denoise model-summary`) and the tests all ask this table; none keeps a list of its
own. An architecture is two modules and one row here (docs/architecture.md): its settings, a
Keras-free `@section` class under denoise.core.architecture_settings that params.yaml's
train.architectures.<name> (and a variant's `settings`) is validated against, and its builder,
`build(train, spec, input_size)` in a module under denoise.models. The row holds the settings
class itself and names the builder as "module:function", which denoise.models.build imports:
config validation must not import Keras.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from denoise.core.architecture_settings.dense_ae import DenseAE
from denoise.core.architecture_settings.dncnn import DnCNN
from denoise.core.architecture_settings.drunet import DRUNet
from denoise.core.architecture_settings.fastdvdnet import FastDVDnet
from denoise.core.architecture_settings.ffdnet import FFDNet


@dataclasses.dataclass(frozen=True)
class Architecture:
    """builder: "module:function" that builds it. settings: the class of its settings
    (train.architectures.<name>), None when it has none. The rules below get the model's
    resolved settings (None when it has none): side_multiple(settings): frames and patches
    must be multiples of this. size_rule(settings, side): a message when frames or patches of
    that side cannot work, else None. window(settings): frames per output frame; above 1 a temporal
    model, whose input is that many consecutive frames stacked on the channel axis (oldest
    first) and whose output is the middle one denoised."""

    builder: str
    summary: str
    settings: type | None = None
    side_multiple: Callable[[Any], int] = lambda settings: 1
    size_rule: Callable[[Any, int], str | None] = lambda settings, side: None
    window: Callable[[Any], int] = lambda settings: 1


def _dense_ae_rule(settings: DenseAE, side: int) -> str | None:
    if not settings.fits(side):
        return (
            f"must leave a multiple of dense_ae's stride ({settings.stride}) after its patch "
            f"({settings.patch})"
        )
    return None


ARCHITECTURES: dict[str, Architecture] = {
    "paper_cae": Architecture(
        "denoise.models.paper_cae:build",
        "the paper's convolutional autoencoder",
        side_multiple=lambda settings: 4,
    ),
    "dense_ae": Architecture(
        "denoise.models.dense_ae:build",
        "a Dense autoencoder on overlapping patches",
        DenseAE,
        size_rule=_dense_ae_rule,
    ),
    "dncnn": Architecture("denoise.models.dncnn:build", "DnCNN: residual 3x3 convolutions", DnCNN),
    "ffdnet": Architecture(
        "denoise.models.ffdnet:build",
        "FFDNet-style: DnCNN on 2x2-packed pixels",
        FFDNet,
        side_multiple=lambda settings: 2,
    ),
    "drunet": Architecture(
        "denoise.models.drunet:build",
        "a DRUNet-style residual U-Net",
        DRUNet,
        side_multiple=lambda settings: settings.multiple,
    ),
    "fastdvdnet": Architecture(
        "denoise.models.fastdvdnet:build",
        "FastDVDnet-style video denoiser: U-Nets on frame triplets, then on their outputs",
        FastDVDnet,
        side_multiple=lambda settings: settings.multiple,
        window=lambda settings: settings.window,
    ),
}
