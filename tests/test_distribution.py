"""Data-parallel training on one node, on the JAX backend with two host devices standing in
for two GPUs (XLA_FLAGS=--xla_force_host_platform_device_count=2): each batch is split across
both, and a step on a pre-drawn noisy batch gives the weights a single device gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax", reason="the dev extra installs jax (CPU); run make setup")

_SCRIPT = textwrap.dedent(
    """
    import json
    import keras
    import numpy as np
    from denoise.core.config import default_params
    from denoise.core.errors import TrainingError
    from denoise.models.build import build_model
    from denoise.training.distribution import data_parallel

    params = default_params()
    rng = np.random.default_rng(0)
    clean = rng.random((8, 16, 16, 3), dtype=np.float32)
    noisy = clean + rng.normal(0, 25 / 255, clean.shape).astype(np.float32)  # pre-drawn

    def one_step(initial):
        keras.utils.set_random_seed(0)
        model = build_model("paper_cae", params.train)
        if initial is not None:
            model.set_weights(initial)
        start = [weight.copy() for weight in model.get_weights()]
        model.compile(optimizer=keras.optimizers.SGD(10.0), loss="mse")
        model.train_on_batch(noisy, clean)
        return start, model.get_weights()

    start, single = one_step(None)
    lines = []
    with data_parallel(8, lines.append) as devices:
        distribution = keras.distribution.distribution()
        sharded = keras.distribution.distribute_tensor(
            noisy, distribution.get_data_layout(noisy.shape)
        )
        shards = [list(shard.data.shape) for shard in sharded.addressable_shards]
        shard_devices = sorted(str(shard.device) for shard in sharded.addressable_shards)
        _, parallel = one_step(start)
        model = build_model("paper_cae", params.train)
        model.compile(optimizer="adam", loss="mse")

        class Batches(keras.utils.PyDataset):
            def __len__(self):
                return 2

            def __getitem__(self, index):
                return noisy, clean

        history = model.fit(Batches(), epochs=1, verbose=0)
        variable_devices = len(model.weights[0].value.sharding.device_set)
    try:
        with data_parallel(7):
            pass
        refused = ""
    except TrainingError as error:
        refused = str(error)
    print(json.dumps({
        "devices": devices,
        "distribution": type(distribution).__name__,
        "shards": shards,
        "shard_devices": shard_devices,
        "variable_devices": variable_devices,
        "largest_difference": max(
            float(np.abs(a - b).max()) for a, b in zip(single, parallel)
        ),
        "largest_change": max(float(np.abs(a - b).max()) for a, b in zip(start, single)),
        "fit_loss": history.history["loss"][-1],
        "lines": lines,
        "refused": refused,
    }))
    """
)


def test_a_batch_is_split_across_two_devices_and_a_step_matches_one_device() -> None:
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    assert report["distribution"] == "DataParallel"
    assert report["shards"] == [[4, 16, 16, 3], [4, 16, 16, 3]], "half the batch on each"
    assert report["shard_devices"] == ["cpu:0", "cpu:1"]
    assert report["variable_devices"] == 2, "the variables are replicated on both"
    # The step moves the weights; both ways agree to float32 round-off of the reductions.
    assert report["largest_change"] > 1e-3, report
    assert report["largest_difference"] < 1e-4 * report["largest_change"], report
    assert report["fit_loss"] > 0
    assert report["lines"] == ["data-parallel on 2 devices (cpu:0, cpu:1): 4 patches each per step"]
    assert report["refused"] == (
        "batch_size 7 does not split across 2 devices; make it a multiple of 2"
    )
