"""DnCNN's settings (train.architectures.dncnn)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from denoise.core.schema import AtLeast1, Bool, Int, section


@section
class DnCNN:
    """DnCNN (Zhang et al. 2017): `depth` 3x3 conv layers of `width` channels."""

    depth: Annotated[Int, Field(ge=3)]  # first, middle, last
    width: AtLeast1
    batch_norm: Bool
