"""The temporal model (fastdvdnet): its windows, its training on clips, scoring and registering."""

from __future__ import annotations

import dataclasses
import json
import tracemalloc
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import yaml
from conftest import PROJECT_ROOT, tiny_clip_params, write_tiny_video

from denoise.core.architecture_settings.drunet import DRUNet
from denoise.core.architecture_settings.fastdvdnet import FastDVDnet
from denoise.core.config import (
    Params,
    default_params,
    params_from_dict,
    params_to_dict,
    with_recipe,
)
from denoise.core.errors import ConfigError, InputError
from denoise.core.temporal import REFLECTED_FRAME, as_channels, reflected, temporal_windows
from denoise.core.train_config import ModelBudget, Variant
from denoise.data.extract import load_clips_manifest
from denoise.data.video import read_image_float, read_video_rgb, write_image_float
from denoise.models.build import build_model, multiply_adds_per_pixel, required_multiple
from denoise.models.drunet import drunet
from denoise.models.fastdvdnet import fastdvdnet
from denoise.serving import apply, choose
from denoise.serving.tiling import denoise_batch
from denoise.stages.evaluate import run as run_evaluate
from denoise.stages.extract import run as run_extract
from denoise.stages.init import resolve
from denoise.stages.noise import run as run_noise
from denoise.stages.register import run as run_register
from denoise.stages.train import run as run_train
from denoise.training.noise import TrainingNoise
from denoise.training.settings import with_active
from denoise.training.stream import ClipStream, clip_validation

VIDEO, PEER = "fastdvdnet_tiny", "drunet_peer_tiny"


@pytest.fixture(autouse=True)
def own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A tracking store of the test's own: the champions it registers (or expects none of)
    are nobody else's."""
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def video_params(tmp_path: Path) -> Params:
    """A 10-second 8-fps 32x32 video with two 6-frame clips per split; a tiny fastdvdnet and a
    single-frame drunet trained on the same clips."""
    config = tiny_clip_params(tmp_path)
    variants = {
        **config.train.variants,
        VIDEO: Variant("fastdvdnet", settings=FastDVDnet(5, [4, 8], 1, 2)),
        PEER: Variant("drunet", settings=DRUNet([8, 16], 1)),
    }
    train = with_active(
        dataclasses.replace(config.train, variants=variants), models=[VIDEO, PEER], sampling="clips"
    )
    return dataclasses.replace(config, train=train)


def test_the_model_denoises_the_middle_frame_of_its_window_and_starts_as_identity() -> None:
    model = fastdvdnet(5, (4, 8), 1)
    window = np.random.default_rng(0).random((2, 16, 16, 15), dtype=np.float32)
    denoised = np.asarray(model(window))
    assert denoised.shape == (2, 16, 16, 3)
    # Both blocks' last convs start at zero: the untrained model passes the middle frame.
    np.testing.assert_array_equal(denoised, window[..., 6:9])
    assert required_multiple(model) == 2, "the blocks' downsampling, inside nested models"
    with pytest.raises(ValueError, match="odd"):
        fastdvdnet(4)


def test_multiply_adds_count_each_call_of_the_shared_triplet_block() -> None:
    model = fastdvdnet(5, (4, 8), 1)
    triplet, fusion = model.get_layer("triplet_block"), model.get_layer("fusion_block")
    assert multiply_adds_per_pixel(model) == pytest.approx(
        3 * multiply_adds_per_pixel(triplet) + multiply_adds_per_pixel(fusion)
    )
    # By hand for one block: head 3x3 9->4, two 3x3 4->4 at full size, a 2x2 stride-2 4->8,
    # two 3x3 8->8 at a quarter, a 2x2 stride-2 transpose 8->4 from a quarter, two 3x3 4->4,
    # the 3x3 4->3 correction.
    by_hand = 9 * 9 * 4 + 2 * 9 * 16 + 4 * 4 * 8 / 4 + 2 * 9 * 64 / 4 + 4 * 8 * 4 / 4
    by_hand += 2 * 9 * 16 + 9 * 4 * 3
    assert multiply_adds_per_pixel(triplet) == pytest.approx(by_hand)


def test_one_stage_is_a_single_u_net_on_the_whole_window() -> None:
    model = fastdvdnet(5, (4, 8), 1, stages=1)
    window = np.random.default_rng(1).random((2, 16, 16, 15), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(model(window)), window[..., 6:9])
    assert [layer.name for layer in model.layers if isinstance(layer, keras.Model)] == [
        "window_block"
    ]
    # The single-frame U-Net of the same widths but for its head conv's 12 more input channels.
    single = drunet((4, 8), 1)
    assert multiply_adds_per_pixel(model) == pytest.approx(
        multiply_adds_per_pixel(single) + 12 * 9 * 4
    )
    with pytest.raises(ConfigError, match="stages: must be one of 1, 2, got 3"):
        dataclasses.replace(default_params().train.architectures["fastdvdnet"], stages=3)


@pytest.mark.parametrize("recipe", ["video-cpu", "video-gpu"])
def test_a_video_recipe_compares_models_of_similar_compute(recipe: str) -> None:
    """Each temporal model within 25% of its single-frame peer's multiply-adds per output pixel
    (the "similar compute" of docs/benchmarks.md, Video), on the same clips (sampling: clips)."""
    values = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    train = params_from_dict(with_recipe(values, recipe)).train
    assert train.active.sampling == "clips"
    work = {name: multiply_adds_per_pixel(build_model(name, train)) for name in train.models}
    temporal = [name for name in train.models if train.window(name) > 1]
    (peer,) = [name for name in train.models if train.window(name) == 1]
    assert temporal
    for name in temporal:
        assert abs(work[name] / work[peer] - 1) <= 0.25, (name, work[name], peer, work[peer])


def test_reflected_positions_match_the_windows_of_a_clip() -> None:
    clip = np.arange(7, dtype=np.float32)[:, None, None, None] * np.ones((7, 2, 2, 3), np.float32)
    for centre, window in enumerate(temporal_windows(iter(clip), 2)):
        np.testing.assert_array_equal(window, clip[reflected(centre, 2, 7)])
    stacked = as_channels(clip[:3])
    assert stacked.shape == (2, 2, 9)
    np.testing.assert_array_equal(stacked[..., 3:6], clip[1])


def test_tiling_takes_window_stacks_and_returns_the_middle_frames() -> None:
    model = fastdvdnet(3, (4, 8), 1)
    rng = np.random.default_rng(1)
    for layer in model.layers:  # non-zero weights: a model that mixes the frames
        for sub in getattr(layer, "layers", [layer]):
            sub.set_weights([rng.normal(0, 0.1, w.shape) for w in sub.get_weights()])
    windows = rng.random((2, 40, 36, 9), dtype=np.float32)
    whole = denoise_batch(model, windows, 64, 0, 4)  # one tile per image
    np.testing.assert_allclose(whole, np.clip(model(windows), 0, 1), atol=1e-5)
    assert denoise_batch(model, windows, 16, 4, 4).shape == (2, 40, 36, 3)


def _mixing_model(window: int, path: Path) -> keras.Model:
    """A tiny fastdvdnet with small random weights in every layer (it mixes the frames), saved
    at path."""
    model = fastdvdnet(window, (4, 8), 1)
    rng = np.random.default_rng(1)
    for block in ("triplet_block", "fusion_block"):
        for layer in model.get_layer(block).layers:
            layer.set_weights([rng.normal(0, 0.05, w.shape) for w in layer.get_weights()])
    model.save(path)
    return model


def test_apply_denoises_a_video_window_by_window_as_by_hand(params: Params, tmp_path: Path) -> None:
    """Each output frame is the model on the reflect-padded window around it (the written
    video is Motion-JPEG: equal within its quantisation)."""
    model = _mixing_model(5, tmp_path / "video.keras")
    source = write_tiny_video(tmp_path / "clip.avi", num_frames=9, fps=5.0)
    summary = apply.run(params, [source], tmp_path / "out", str(tmp_path / "video.keras"))
    (applied,) = summary.outputs
    assert (applied.frames, applied.width, applied.height, applied.fps) == (9, 32, 32, 5.0)
    frames = np.stack(list(read_video_rgb(source)))
    padded = np.pad(frames, [(2, 2), (0, 0), (0, 0), (0, 0)], mode="reflect")
    by_hand = np.clip(
        np.concatenate([model(as_channels(padded[t : t + 5])[None]) for t in range(9)]), 0, 1
    )
    written = np.stack(list(read_video_rgb(applied.output)))
    assert written.shape == by_hand.shape
    assert np.abs(written - by_hand).mean() < 0.02
    assert np.abs(written - frames).mean() > 2 * np.abs(written - by_hand).mean(), "it mixes"


def test_the_pyfunc_takes_windows_one_window_and_ragged_batches_of_windows(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from denoise.serving.pyfunc import KERAS_ARTIFACT, DenoiserModel

    model = _mixing_model(5, tmp_path / "video.keras")
    served = DenoiserModel()
    served.load_context(
        SimpleNamespace(artifacts={KERAS_ARTIFACT: str(tmp_path / "video.keras")}, model_config={})
    )
    assert served.window == 5
    rng = np.random.default_rng(2)
    windows = rng.random((2, 5, 16, 24, 3), dtype=np.float32)
    expected = np.clip(model(np.stack([as_channels(w) for w in windows])), 0, 1)
    np.testing.assert_allclose(served.predict(None, windows), expected, atol=1e-5)
    np.testing.assert_allclose(served.predict(None, windows[1]), expected[1], atol=1e-5)
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = windows[0], rng.random((5, 8, 8, 3), dtype=np.float32)
    denoised = served.predict(None, ragged)
    assert denoised[1].shape == (8, 8, 3)
    np.testing.assert_allclose(denoised[0], expected[0], atol=1e-5)
    with pytest.raises(ValueError, match=r"takes windows \(N, 5, H, W, 3\)"):
        served.predict(None, windows[:, :3])


def test_apply_holds_a_window_and_a_batch_whatever_the_video_length(
    params: Params, tmp_path: Path
) -> None:
    """Peak memory (numpy and Python allocations: frames, windows, batches) of applying a
    temporal model to a 16- and a 128-frame video: the same, within a few frames."""
    model = _mixing_model(5, tmp_path / "video.keras")
    side = 64
    frame_bytes = side * side * 3 * 4

    def peak(frames: int) -> int:
        source = write_tiny_video(tmp_path / f"v{frames}.avi", num_frames=frames, size=side)
        tracemalloc.start()
        try:
            apply.apply_to_video(model, source, tmp_path / f"out{frames}.avi", params.apply)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(16)  # traces the model's functions once, outside the measurements
    short, long = peak(16), peak(128)
    # Holding the video would add 112 frames (and their 5-frame windows: 560) at the long one.
    assert long < short + 16 * frame_bytes, (short / frame_bytes, long / frame_bytes)


def test_a_temporal_model_refuses_stills_and_videos_shorter_than_half_its_window(
    params: Params, tmp_path: Path
) -> None:
    _mixing_model(5, tmp_path / "video.keras")
    model = str(tmp_path / "video.keras")
    still = tmp_path / "still.png"
    write_image_float(still, np.full((16, 16, 3), 0.5, np.float32), np.dtype(np.uint8))
    with pytest.raises(InputError, match=r"still image cannot go to .*temporal model of 5"):
        apply.run(params, [still], tmp_path / "out", model)
    short = write_tiny_video(tmp_path / "short.avi", num_frames=2)
    with pytest.raises(InputError, match=r"short\.avi: a clip of 2 frames is shorter"):
        apply.run(params, [short], tmp_path / "out", model)
    assert not (tmp_path / "out" / "short.avi").exists()


def _noise(**changes: object) -> dict[str, object]:
    """A TrainingNoise layer's config: params.yaml's noise.train with `changes`."""
    return {**dataclasses.asdict(default_params().noise.train), **changes}


def test_training_noise_is_independent_per_frame_of_a_window() -> None:
    clean = np.full((64, 16, 16, 15), 0.5, np.float32)
    noise = TrainingNoise(_noise(kind="gaussian_blind", sigma_min=20, sigma_max=30), seed=3)
    drawn = np.asarray(noise(clean, training=True)) - clean
    frames = drawn.reshape(64, 16, 16, 5, 3)
    correlation = np.corrcoef(frames[..., 1, :].ravel(), frames[..., 2, :].ravel())[0, 1]
    assert abs(correlation) < 0.03
    # One level per window: every frame's std-dev about the same within a window.
    per_frame = frames.std(axis=(1, 2, 4))
    assert np.all(per_frame.std(axis=1) / per_frame.mean(axis=1) < 0.15)
    salted = TrainingNoise(_noise(kind="salt_pepper", amount=0.3), seed=3)
    hits = (np.asarray(salted(clean, training=True)) != 0.5).reshape(64, 16, 16, 5, 3)
    assert np.all(hits.all(axis=-1) == hits.any(axis=-1)), "a pixel's channels alike"
    assert not np.array_equal(hits[..., 0, 0], hits[..., 1, 0]), "each frame its own pixels"


def test_reflected_frames_get_the_noise_of_the_frames_they_mirror_as_at_inference() -> None:
    rng = np.random.default_rng(4)
    clip = rng.random((3, 8, 8, 3), dtype=np.float32)  # a clip of 3 frames, window 5
    first = as_channels(clip[reflected(0, 2, 3)])  # frames 2 1 0 1 2
    last = as_channels(clip[reflected(2, 2, 3)][::-1])  # frames 0 1 2 1 0, run backwards
    marked = np.stack([first, last])
    marked[0, ..., :6] = REFLECTED_FRAME  # positions 0 and 1 lie before frame 0
    marked[1, ..., :6] = REFLECTED_FRAME  # backwards, positions 0 and 1 lie after frame 2
    layer = TrainingNoise(_noise(kind="gaussian", sigma=25), seed=5)
    noisy = np.asarray(layer(marked, training=True)).reshape(2, 8, 8, 5, 3)
    for window in noisy:
        np.testing.assert_array_equal(window[..., 0, :], window[..., 4, :])
        np.testing.assert_array_equal(window[..., 1, :], window[..., 3, :])
    # The real frames: the clean frame plus the noise a window without reflections gets.
    plain = np.stack([first, last])
    again = np.asarray(TrainingNoise(layer.noise, seed=5)(plain, training=True))
    np.testing.assert_array_equal(noisy.reshape(again.shape)[..., 6:], again[..., 6:])
    assert 0.08 < np.std(again - plain) < 0.12  # sigma 25 / 255
    correlation = np.corrcoef((again - plain)[..., 0:3].ravel(), (again - plain)[..., 12:].ravel())
    assert abs(correlation[0, 1]) < 0.2, "unmarked, the same clean frames get their own noise"


def test_the_stream_marks_the_frames_its_windows_hold_by_reflection(video_params: Params) -> None:
    run_extract(video_params)
    frames = Path(video_params.paths.frames)
    clips = load_clips_manifest(frames).query("split == 'train'")
    stream = ClipStream(frames, clips, video_params, window=5)
    patterns = set()
    for index in range(8):
        windows, middles = stream[index]
        stacked = windows.reshape(*windows.shape[:3], 5, 3)
        marked = (stacked == REFLECTED_FRAME).all(axis=(1, 2, 4))  # (B, 5)
        assert np.all(marked == (stacked == REFLECTED_FRAME).any(axis=(1, 2, 4)))
        assert np.all(stacked[~np.broadcast_to(marked[:, None, None, :, None], stacked.shape)] >= 0)
        patterns.update(tuple(row) for row in marked)
        np.testing.assert_array_equal(stacked[..., 2, :], middles)
    # Clips of 6 frames: middle frames 0 and 5 reflect two positions, 1 and 4 one, either way.
    assert patterns <= {
        (False,) * 5,
        (True, True, False, False, False),
        (True, False, False, False, False),
        (False, False, False, True, True),
        (False, False, False, False, True),
    }
    assert len(patterns) == 5


def test_temporal_and_single_frame_streams_draw_the_same_middle_frames(
    video_params: Params,
) -> None:
    run_extract(video_params)
    frames = Path(video_params.paths.frames)
    clips = load_clips_manifest(frames).query("split == 'train'")
    video = ClipStream(frames, clips, video_params, window=5)
    single = ClipStream(frames, clips, video_params, window=1)
    windows, middles = video[2]
    patches, targets = single[2]
    assert windows.shape == (4, 16, 16, 15) and middles.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(windows[..., 6:9], middles)
    np.testing.assert_array_equal(middles, targets)
    np.testing.assert_array_equal(patches, targets)
    np.testing.assert_array_equal(ClipStream(frames, clips, video_params, window=5)[2][0], windows)


def test_clip_validation_holds_windows_and_their_middle_frames() -> None:
    rng = np.random.default_rng(0)
    clean = rng.random((2, 6, 8, 8, 3), dtype=np.float32)
    noisy = clean + 0.1
    inputs, middles = clip_validation(clean, noisy, 5, per_clip=3)
    assert inputs.shape == (6, 8, 8, 15) and middles.shape == (6, 8, 8, 3)
    np.testing.assert_allclose(inputs[..., 6:9], middles + 0.1, rtol=1e-6)


def test_a_temporal_model_needs_clips_long_enough_for_its_window(video_params: Params) -> None:
    values = params_to_dict(video_params)
    values["extract"]["clips"]["per_split"] = 0
    with pytest.raises(ConfigError, match=r"per_split.*fastdvdnet_tiny trains on clips"):
        params_from_dict(values)
    values["extract"]["clips"] = {"length": 4, "per_split": 2}
    with pytest.raises(ConfigError, match="window of 5 frames"):
        params_from_dict(values)
    values["train"]["architectures"]["fastdvdnet"]["window"] = 4
    with pytest.raises(
        ConfigError, match=r"train\.architectures\.fastdvdnet\.window: must be one of 3, 5"
    ):
        params_from_dict(values)


def test_train_evaluate_register_a_video_model_beside_its_single_frame_peer(
    video_params: Params, tmp_path: Path
) -> None:
    """The tiny pair trains on the same clips; evaluate scores the video model on the clips
    only; register makes it a version of register.video_model_name, the peer of model_name."""
    # init_from: champion, for a temporal model: the video champion; none yet, and no shipped
    # video model, so it starts from scratch.
    from_champion = with_active(video_params.train, per_model={VIDEO: ModelBudget("champion")})
    fine_tuned = dataclasses.replace(video_params, train=from_champion)
    assert resolve(VIDEO, fine_tuned, tmp_path / "init") is None
    run_extract(video_params)
    run_noise(video_params)
    run_train(video_params)
    models = Path(video_params.paths.models)
    video = keras.models.load_model(models / f"{VIDEO}.keras", compile=False)
    assert video.input_shape == (None, None, None, 15)
    summary = json.loads((models / f"{VIDEO}.json").read_text())
    assert summary["architecture"] == "fastdvdnet"
    runs = mlflow.search_runs(
        experiment_names=[video_params.tracking.experiment],
        filter_string=f"tags.`denoise.model` = '{VIDEO}'",
        output_format="list",
    )
    datasets = {item.dataset.name for run in runs for item in run.inputs.dataset_inputs}
    assert {"raw-videos", "frames", "clips"} <= datasets, "it trained on the clips"
    metrics = run_evaluate(video_params).metrics
    assert all(VIDEO not in level for level in metrics["sets"]["test"]["levels"].values())
    scored = metrics["clip_sets"]["clips-test"]["levels"]["gaussian-25"]
    assert {VIDEO, PEER, "noisy", "bm4d"} <= set(scored)
    assert np.isfinite(scored[VIDEO]["tpsnr"])
    strips = Path(video_params.paths.evaluation) / "strips" / "clips-test" / "gaussian-25"
    assert (strips / f"{VIDEO}.png").is_file()
    comparison = read_image_float(strips / f"{VIDEO}-vs-{PEER}.png")[0]
    assert comparison.shape == (6 * 36 - 4, 4 * 32 + 12, 3), "noisy | peer | video | clean"
    decisions = {entry.model: entry for entry in run_register(video_params).decisions}
    assert decisions[VIDEO].registered_model == video_params.register.video_model_name
    assert decisions[PEER].registered_model == video_params.register.model_name
    assert decisions[VIDEO].alias == decisions[PEER].alias == "champion"
    assert decisions[VIDEO].score == pytest.approx(scored[VIDEO]["psnr"], abs=0.01)
    # denoise apply: videos get the video champion, images the image champion.
    video = Path(video_params.paths.raw) / "long.avi"
    still = tmp_path / "still.png"
    write_image_float(still, np.full((32, 32, 3), 0.5, np.float32), np.dtype(np.uint8))
    summary = apply.run(video_params, [video, still], tmp_path / "out")
    assert summary.video_model_uri == f"models:/{video_params.register.video_model_name}@champion"
    assert summary.model_uri == f"models:/{video_params.register.model_name}@champion"
    assert [entry.frames for entry in summary.outputs] == [1, 80]
    resolved = resolve(VIDEO, fine_tuned, tmp_path / "init")
    assert resolved is not None
    assert resolved.description.startswith(summary.video_model_uri)


def test_videos_fall_back_to_the_image_model_frame_by_frame_then_the_shipped_one(
    params: Params, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    source = write_tiny_video(tmp_path / "clip.avi", num_frames=4)
    still = tmp_path / "still.png"
    write_image_float(still, np.full((16, 16, 3), 0.5, np.float32), np.dtype(np.uint8))
    tried: list[str] = []
    load = choose.load_model_at
    monkeypatch.setattr(choose, "load_model_at", lambda p, uri: tried.append(uri) or load(p, uri))
    summary = apply.run(params, [source, still], tmp_path / "out")
    assert summary.video_model_uri is not None and summary.video_model_uri.endswith(".keras")
    assert summary.model_uri == summary.video_model_uri
    assert sorted(tried) == sorted(set(tried)), "each model is tried once for both kinds"
    said = capsys.readouterr().err
    image_champion = f"models:/{params.register.model_name}@champion"
    video_champion = f"models:/{params.register.video_model_name}@champion"
    assert f"no {video_champion} yet" in said
    assert f"using the image champion {image_champion} frame by frame" in said
    assert f"no {image_champion} yet" in said
    assert "using the shipped pretrained model" in said
