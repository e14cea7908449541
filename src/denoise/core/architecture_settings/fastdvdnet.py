"""FastDVDnet's settings (train.architectures.fastdvdnet)."""

from __future__ import annotations

from typing import Literal

from denoise.core.schema import AtLeast1, Widths, section


@section
class FastDVDnet:
    """FastDVDnet-style: `window` frames; U-Net blocks (DRUNet's, `widths`) on each triplet,
    then one on their outputs (stages 2), or one block on the whole window (stages 1)."""

    window: Literal[3, 5, 7, 9, 11]  # odd: a triplet around the middle frame, or more
    widths: Widths
    blocks_per_level: AtLeast1
    stages: Literal[1, 2]

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this: one 2x downsampling per extra level."""
        return 2 ** (len(self.widths) - 1)
