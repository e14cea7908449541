"""denoise: raw video to trained, versioned, registered image-denoising models.

Subpackages in layers, imports pointing down only (checked by `make lint`): cli on top, then
stages, tracking, serving, training and validation, models and data, and core at the bottom.
"""

from typing import Any

__all__ = ["Denoiser"]


def __getattr__(name: str) -> Any:
    """`from denoise import Denoiser`, imported on first use: importing a denoise module loads
    no TensorFlow and no MLflow."""
    if name == "Denoiser":
        from denoise.serving.api import Denoiser

        return Denoiser
    raise AttributeError(f"module 'denoise' has no attribute {name!r}")
