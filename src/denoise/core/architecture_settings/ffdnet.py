"""FFDNet's settings (train.architectures.ffdnet)."""

from __future__ import annotations

from denoise.core.architecture_settings.dncnn import DnCNN
from denoise.core.schema import Bool, section


@section
class FFDNet(DnCNN):
    """FFDNet-style: DnCNN's stack on 2x2-packed pixels, with an estimated noise-level map."""

    noise_map: Bool  # false: no map, the network infers the level itself
