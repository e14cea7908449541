"""DRUNet's settings (train.architectures.drunet)."""

from __future__ import annotations

from denoise.core.schema import AtLeast1, Widths, section


@section
class DRUNet:
    """A DRUNet-style U-Net: one level per width, `blocks_per_level` residual blocks each."""

    widths: Widths
    blocks_per_level: AtLeast1

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this: one 2x downsampling per extra level."""
        return 2 ** (len(self.widths) - 1)
