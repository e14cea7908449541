"""denoise.core.images: triptychs as MLflow and the evaluation folder show them."""

from __future__ import annotations

import numpy as np

from denoise.core.images import LABEL_HEIGHT, triptych


def test_a_labelled_triptych_writes_each_label_above_its_image() -> None:
    gray = np.full((40, 200, 3), 0.5, np.float32)
    plain = triptych(gray, gray, gray)
    labelled = triptych(gray, gray, gray, ("noisy 20.17 dB", "nlm 29.96 dB", "clean"))
    assert plain.shape == (40, 608, 3)
    assert labelled.shape == (40 + LABEL_HEIGHT, 608, 3)
    assert np.array_equal(labelled[LABEL_HEIGHT:], plain)
    band = labelled[:LABEL_HEIGHT]
    for column in range(3):  # dark text on white over each of the three images
        part = band[:, column * 204 : column * 204 + 200]
        assert (part < 128).any() and (part == 255).mean() > 0.5
