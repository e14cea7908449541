"""denoise: raw video to trained, versioned, registered image-denoising models.

Subpackages in layers, imports pointing down only (checked by `make lint`): cli on top, then
stages, tracking, serving, training and validation, models and data, and core at the bottom.
"""
