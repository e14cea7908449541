"""The Dense autoencoder's settings (train.architectures.dense_ae)."""

from __future__ import annotations

from pydantic import model_validator

from denoise.core.schema import AtLeast1, fail, section


@section
class DenseAE:
    """Dense layers on overlapping `patch` x `patch` tiles placed every `stride` pixels (and
    averaged back): hidden -> code -> hidden units."""

    patch: AtLeast1
    stride: AtLeast1
    hidden: AtLeast1
    code: AtLeast1

    @model_validator(mode="after")
    def _stride(self) -> DenseAE:
        if self.stride > self.patch:
            fail("stride", "must be <= patch")
        return self

    def fits(self, side: int) -> bool:
        """Whether tiles every `stride` pixels cover a side of `side` pixels exactly."""
        return (side - self.patch) % self.stride == 0
