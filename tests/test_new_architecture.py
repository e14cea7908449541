"""Adding an architecture is two new modules and one row (docs/architecture.md): a throwaway
one, written by the test, is validated, built, trained a step, saved and loaded with no other
edit to the project."""

from __future__ import annotations

import importlib
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import project_values

from denoise.core.architectures import ARCHITECTURES, Architecture
from denoise.core.config import params_from_dict
from denoise.core.errors import ConfigError
from denoise.models.build import build_model, count_parameters, load_model
from denoise.models.precision import at_precision

SETTINGS = '''
"""The throwaway architecture's settings: Keras-free, as core requires."""

from denoise.core.schema import AtLeast1, section


@section
class TinyNet:
    width: AtLeast1
'''

BUILDER = '''
"""The throwaway architecture's builder, with a custom layer that load_model must know."""

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="tiny_net")
class Halve(layers.Layer):
    def call(self, inputs):
        return inputs * 0.5


def build(train, spec, input_size=None):
    noisy = keras.Input((input_size, input_size, 3), name="noisy")
    features = layers.Conv2D(spec.settings.width, 3, padding="same", activation="relu")(noisy)
    correction = Halve(name="halve")(layers.Conv2D(3, 3, padding="same")(features))
    denoised = layers.Add(name="denoised", dtype="float32")([noisy, correction])
    return keras.Model(noisy, denoised, name="tiny_net")
'''


@pytest.fixture
def tiny_net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The throwaway architecture's two modules on sys.path and its row in the table."""
    (tmp_path / "tiny_net_settings.py").write_text(SETTINGS)
    (tmp_path / "tiny_net_builder.py").write_text(BUILDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = importlib.import_module("tiny_net_settings").TinyNet
    row = Architecture("tiny_net_builder:build", "a throwaway two-conv net", settings)
    monkeypatch.setitem(ARCHITECTURES, "tiny_net", row)
    return "tiny_net"


def _values(settings: dict) -> dict:
    return project_values(
        {
            "train": {
                "models": ["tiny_net", "tiny_net_wide"],
                "architectures": {"tiny_net": settings},
                "variants": {
                    "tiny_net_wide": {"architecture": "tiny_net", "settings": {"width": 6}}
                },
            }
        }
    )


def test_a_new_architecture_is_two_modules_and_a_row(tiny_net: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.architectures\.tiny_net\.width: must be >= 1"):
        params_from_dict(_values({"width": 0}))
    with pytest.raises(ConfigError, match=r"train\.architectures\.tiny_net: missing"):
        params_from_dict(project_values({"train": {"models": ["tiny_net"]}}))
    train = params_from_dict(_values({"width": 4})).train
    assert train.window(tiny_net) == 1
    assert count_parameters(build_model(tiny_net, train)) == 9 * 3 * 4 + 4 + 9 * 4 * 3 + 3
    assert count_parameters(build_model("tiny_net_wide", train)) == 9 * 3 * 6 + 6 + 9 * 6 * 3 + 3

    model = build_model(tiny_net, train)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    rng = np.random.default_rng(0)
    clean = rng.random((2, 16, 16, 3), dtype=np.float32)
    noisy = (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)
    before = [weight.copy() for weight in model.get_weights()]
    loss = model.train_on_batch(noisy, clean)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))

    path = tmp_path / "tiny_net.keras"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.predict(noisy, verbose=0), model.predict(noisy, verbose=0))
    # No keeps_float32 in its builder: its output stays float32, the convolutions go bfloat16.
    mixed = at_precision(loaded, "bfloat16")
    assert mixed.get_layer("denoised").dtype_policy.name == "float32"
    convolutions = [layer for layer in mixed.layers if isinstance(layer, keras.layers.Conv2D)]
    assert {layer.dtype_policy.name for layer in convolutions} == {"mixed_bfloat16"}
