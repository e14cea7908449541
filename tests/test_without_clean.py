"""Learning without clean targets (supervision noisy): frame-to-frame's warp and mask,
Neighbor2Neighbor's sub-sampler, tiny training runs on noisy sources, and the bad inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from denoise.core.config import Params
from denoise.core.errors import ConfigError, DataError
from denoise.core.train_config import Variant
from denoise.data.flow import frame_to_frame_target, warp
from denoise.data.subsampling import neighbour_masks, subsample
from denoise.training.settings import with_active

SIZE = 32


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random RGB pattern, float32 (height, width, 3) spanning [0, 1]."""
    rng = np.random.default_rng(seed)
    pattern = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 2.5)
    return (pattern - pattern.min()) / (pattern.max() - pattern.min())


def translating_clip(frames: int, sigma: float, seed: int = 0) -> np.ndarray:
    """uint8 (frames, SIZE, SIZE, 3): a pattern moving one pixel left per frame, with
    Gaussian noise of sigma (0-255 scale), as saved."""
    pattern, rng = texture(SIZE, SIZE + frames, seed), np.random.default_rng(seed + 1)
    clip = np.stack([pattern[:, step : step + SIZE] for step in range(frames)])
    noisy = clip + rng.normal(0.0, sigma / 255.0, clip.shape)
    return np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)


def test_a_translating_pattern_is_warped_exactly_and_the_occluded_band_masked(
    params: Params,
) -> None:
    pattern = texture(SIZE, SIZE + 8, seed=0)
    frame, neighbour = pattern[:, 0:SIZE], pattern[:, 3 : SIZE + 3]  # frame[x] = neighbour[x - 3]
    shift = np.zeros((SIZE, SIZE, 2), np.float32)
    shift[..., 0] = -3.0
    warped, inside = warp(neighbour, shift)
    assert not inside[:, :3].any() and inside[:, 3:].all()
    np.testing.assert_array_equal(warped[:, 3:], frame[:, 3:])  # integer flow: exact
    # Estimated flow (DIS on the blurred copies), nearest-pixel warp: the band that entered is
    # masked, and nearly every kept pixel is the frame's own, exactly.
    target, mask = frame_to_frame_target(frame, neighbour, params.train.without_clean)
    assert not mask[:, :3].any()
    assert mask[:, 5:].mean() > 0.8
    assert (target == frame).all(axis=-1)[mask].mean() > 0.95
    assert np.abs(target - frame)[mask].mean() < 1 / 255
    assert (target[~mask] == 0).all()


def test_a_scene_cut_keeps_too_few_pixels(params: Params) -> None:
    settings = params.train.without_clean
    _, mask = frame_to_frame_target(texture(SIZE, SIZE, 0), texture(SIZE, SIZE, 9), settings)
    assert mask.mean() < settings.min_coverage


def test_neighbour_sub_sampler_pairs_side_sharing_pixels_of_every_cell() -> None:
    rng = np.random.default_rng(0)
    masks = neighbour_masks(8, 12, rng)
    assert masks.shape == (8, 12, 2) and masks.dtype == np.float32
    cells = masks.reshape(4, 2, 6, 2, 2).transpose(0, 2, 1, 3, 4).reshape(4, 6, 4, 2)
    assert (cells.sum(axis=2) == 1).all()  # one pixel per cell in each sub-image
    first, second = cells[..., 0].argmax(-1), cells[..., 1].argmax(-1)
    rows, columns = np.divmod(first, 2), np.divmod(second, 2)
    distance = np.abs(rows[0] - columns[0]) + np.abs(rows[1] - columns[1])
    assert (distance == 1).all()  # neighbours sharing a side, never the same pixel
    # The pixel of each sub-image is the one its mask picks, in its cell.
    image = np.arange(8 * 12 * 3, dtype=np.float32).reshape(8, 12, 3)
    sub = subsample(image, masks[..., 0])
    assert sub.shape == (4, 6, 3)
    cell_rows, cell_columns = np.divmod(first, 2)
    expected = image[
        2 * np.arange(4)[:, None] + cell_rows, 2 * np.arange(6)[None, :] + cell_columns
    ]
    np.testing.assert_array_equal(sub, expected)
    # Over many cells every ordered pair is drawn.
    many = neighbour_masks(64, 64, rng).reshape(32, 2, 32, 2, 2).transpose(0, 2, 1, 3, 4)
    pairs = set(
        zip(
            many[..., 0].reshape(-1, 4).argmax(-1).tolist(),
            many[..., 1].reshape(-1, 4).argmax(-1).tolist(),
            strict=True,
        )
    )
    assert pairs == {(0, 1), (0, 2), (1, 3), (2, 3), (1, 0), (2, 0), (3, 1), (3, 2)}
    with pytest.raises(DataError, match="even sides"):
        neighbour_masks(7, 8, rng)


def test_the_training_step_sub_samples_as_the_host_and_masks_its_loss() -> None:
    from keras import ops

    from denoise.training.supervision import NeighbourSubImages, masked_mse

    rng = np.random.default_rng(0)
    noisy = rng.random((2, 8, 8, 3)).astype(np.float32)
    masks = np.stack([neighbour_masks(8, 8, rng) for _ in noisy])
    _, first = NeighbourSubImages()(np.concatenate([noisy, masks], axis=-1))
    host = np.stack(
        [subsample(image, mask[..., 0]) for image, mask in zip(noisy, masks, strict=True)]
    )
    np.testing.assert_allclose(ops.convert_to_numpy(first), host, rtol=1e-6)
    # Masked pixels count for nothing: a huge error there leaves the loss as it was.
    target, denoised = rng.random((2, 4, 4, 3)), rng.random((2, 4, 4, 3))
    mask = np.zeros((2, 4, 4, 1))
    mask[:, :2] = 1.0
    wrong = denoised.copy()
    wrong[:, 2:] = 100.0
    packed = np.concatenate([target, mask], axis=-1).astype(np.float32)
    loss = np.mean(ops.convert_to_numpy(masked_mse(packed, denoised.astype(np.float32))))
    again = np.mean(ops.convert_to_numpy(masked_mse(packed, wrong.astype(np.float32))))
    expected = np.mean(np.square(denoised[:, :2] - target[:, :2]))
    assert loss == pytest.approx(expected, rel=1e-5) and again == pytest.approx(loss, rel=1e-6)


def noisy_params(params: Params, root: Path) -> Params:
    """`params` training one paper_cae variant of supervision noisy on a tiny budget."""
    variants = {**params.train.variants, "cae_noisy": Variant("paper_cae", supervision="noisy")}
    train = dataclasses.replace(params.train, variants=variants, models=["cae_noisy"])
    train = with_active(train, epochs=3, steps_per_epoch=8, batch_size=4, patch_size=16)
    return dataclasses.replace(
        params,
        train=train,
        paths=dataclasses.replace(params.paths, frames=str(root / "frames")),
    )


def write_frames(
    frames_dir: Path, sources: dict[str, tuple[str, str, np.ndarray]], clip_length: int = 6
) -> None:
    """A frame manifest (with the role column), its shards, and clips of the videos.

    sources: name -> (kind "video" or "images", role, uint8 (N, H, W, 3) frames); every frame
    is a train frame, and a video's frames are one clip of clip_length (if it has as many).
    """
    (frames_dir / "clips").mkdir(parents=True)
    rows, clips = [], []
    for name, (kind, role, frames) in sources.items():
        shard = f"{name}.0000.npy"
        np.save(frames_dir / shard, frames)
        rows += [
            {"video": name, "source_kind": kind, "frame_index": index, "timestamp_s": index,
             "shard": shard, "offset": index, "split": "train", "role": role}
            for index in range(len(frames))
        ]  # fmt: skip
        if kind == "video" and len(frames) >= clip_length:
            file = f"clips/{name}.train.000.npy"
            np.save(frames_dir / file, frames[:clip_length])
            clips.append({"video": name, "split": "train", "clip": 0, "file": file,
                          "frames": clip_length})  # fmt: skip
    pd.DataFrame(rows).to_parquet(frames_dir / "manifest.parquet", index=False)
    pd.DataFrame(clips).to_parquet(frames_dir / "clips.parquet", index=False)


def validation_pairs(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    clean = np.stack([texture(SIZE, SIZE, seed), texture(SIZE, SIZE, seed + 1)])
    noisy = clean + np.random.default_rng(seed).normal(0, 25 / 255, clean.shape)
    return noisy.astype(np.float32), clean


def test_frame_to_frame_training_lowers_its_loss_and_adds_no_noise(
    params: Params, tmp_path: Path
) -> None:
    from denoise.stages.train import _noisy_stream
    from denoise.training.loop import train_model
    from denoise.training.noise import TrainingNoise
    from denoise.training.stream import frame_to_frame_validation
    from denoise.training.supervision import fitted_model

    config = noisy_params(params, tmp_path)
    frames_dir = Path(config.paths.frames)
    write_frames(frames_dir, {"street.mp4": ("video", "noisy", translating_clip(8, 15))})
    manifest = pd.read_parquet(frames_dir / "manifest.parquet")
    stream = _noisy_stream(config, "cae_noisy", manifest)
    assert type(stream).__name__ == "FrameToFrameStream"
    # The inputs are the stored noisy pixels, no noise added: every patch is a crop of a frame.
    clip = np.load(frames_dir / "clips/street.mp4.train.000.npy").astype(np.float32) / 255.0
    noisy, packed = stream[0]
    assert packed.shape == (*noisy.shape[:3], 4) and set(np.unique(packed[..., 3])) <= {0, 1}
    for patch in noisy:
        views = [patch, patch[:, ::-1], patch[::-1], patch[::-1, ::-1]]
        assert any(
            np.array_equal(view, clip[t, top : top + 16, left : left + 16])
            for view in views
            for t in range(len(clip))
            for top in range(SIZE - 15)
            for left in range(SIZE - 15)
        )
    from denoise.models.build import build_model

    fitted, _ = fitted_model("cae_noisy", config, build_model("paper_cae", config.train), stream)
    assert not any(isinstance(layer, TrainingNoise) for layer in fitted.layers)
    # Held-out noisy frames: their frame-to-frame loss is logged, and chooses the epoch.
    np.save(frames_dir / "clips/held.npy", translating_clip(6, 15, seed=7))
    held_out = frame_to_frame_validation(
        frames_dir, pd.DataFrame({"file": ["clips/held.npy"]}), config.train.without_clean
    )
    assert held_out is not None and held_out[0].shape == (3, SIZE, SIZE, 3)
    logged: list[dict[str, float]] = []
    model, state = train_model(
        "cae_noisy", config, stream, validation_pairs(), tmp_path / "checkpoint", print,
        epoch_logger=lambda epoch, metrics, samples: logged.append(metrics), held_out=held_out,
    )  # fmt: skip
    losses = [record["loss"] for record in state.history]
    assert losses[-1] < losses[0]
    assert np.isfinite([record["val_psnr"] for record in state.history]).all()
    assert all(record["val_frame_to_frame"] == record["val_loss"] for record in state.history)
    assert [metrics["val_frame_to_frame"] for metrics in logged] == [
        record["val_frame_to_frame"] for record in state.history
    ]
    assert model.input_shape[-1] == 3


def test_a_folder_of_one_noisy_image_trains_with_neighbor2neighbor(
    params: Params, tmp_path: Path
) -> None:
    from denoise.stages.train import _noisy_stream
    from denoise.training.loop import train_model

    config = noisy_params(params, tmp_path)
    frames_dir = Path(config.paths.frames)
    image = translating_clip(1, 25, seed=3)
    write_frames(frames_dir, {"holiday": ("images", "noisy", image)})
    notes: list[str] = []
    stream = _noisy_stream(
        config, "cae_noisy", pd.read_parquet(frames_dir / "manifest.parquet"), notes.append
    )
    assert notes == [
        "holiday: one noisy image; Neighbor2Neighbor learns from it alone (from pairs of its "
        "own sub-images)"
    ]
    packed, second = stream[0]
    assert packed.shape == (4, 16, 16, 5) and second.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(second[0], subsample(packed[0, ..., :3], packed[0, ..., 4]))
    _, state = train_model(
        "cae_noisy", config, stream, validation_pairs(), tmp_path / "checkpoint", print
    )
    losses = [record["loss"] for record in state.history]
    assert losses[-1] < losses[0]


def test_a_clip_whose_flow_fails_everywhere_is_skipped_with_a_note(
    params: Params, tmp_path: Path
) -> None:
    from denoise.training.stream import FrameToFrameStream

    config = noisy_params(params, tmp_path)
    frames_dir = Path(config.paths.frames)
    cuts = np.stack([texture(SIZE, SIZE, seed) for seed in range(10, 16)])
    write_frames(
        frames_dir,
        {
            "cuts.mp4": ("video", "noisy", np.round(cuts * 255).astype(np.uint8)),
            "street.mp4": ("video", "noisy", translating_clip(6, 15)),
        },
    )
    notes: list[str] = []
    clips = pd.read_parquet(frames_dir / "clips.parquet")
    stream = FrameToFrameStream(frames_dir, clips, config, print_fn=notes.append)
    assert len(notes) == 1 and notes[0].startswith("cuts.mp4 clip 0: the optical flow failed")
    assert stream.coverage > 0.8
    with pytest.raises(DataError, match="no frame pair of the noisy train clips kept"):
        FrameToFrameStream(frames_dir, clips[clips["video"] == "cuts.mp4"], config, print)


def test_bad_noisy_sources_fail_with_one_line(params: Params, tmp_path: Path) -> None:
    from denoise.stages.train import _noisy_stream, check_supervision

    config = noisy_params(params, tmp_path)
    frames_dir = Path(config.paths.frames)
    write_frames(frames_dir, {"blink.mp4": ("video", "noisy", translating_clip(2, 15))})
    manifest = pd.read_parquet(frames_dir / "manifest.parquet")
    with pytest.raises(DataError) as error:
        _noisy_stream(config, "cae_noisy", manifest)
    assert str(error.value) == (
        "blink.mp4: a noisy video needs at least 3 frames for frame-to-frame training, got 2"
    )
    # Every source noisy while a clean-supervised model is listed: the model and the setting.
    with pytest.raises(ConfigError) as error:
        check_supervision(config, ["cae_noisy", "paper_cae"], manifest)
    assert str(error.value) == (
        "train.supervision: paper_cae learns from clean targets (supervision clean), but every "
        "source is noisy; set it to noisy"
    )
    clean = manifest.assign(role="clean")
    with pytest.raises(ConfigError, match=r"^train.variants.cae_noisy.supervision or train"):
        check_supervision(config, ["cae_noisy"], clean)
    check_supervision(config, ["paper_cae"], clean.drop(columns="role"))  # no role: all clean


def test_a_temporal_model_cannot_learn_from_noisy_sources(params: Params) -> None:
    variant = Variant("fastdvdnet", supervision="noisy")
    with pytest.raises(ConfigError, match=r"models\[0\]: video_noisy has a window of 5 frames"):
        dataclasses.replace(
            params.train,
            variants={**params.train.variants, "video_noisy": variant},
            models=["video_noisy"],
        )


class CrashAfterEpoch:
    """A callback that stops the process-like run after `epoch` epochs (a KeyboardInterrupt)."""

    def __new__(cls, epoch: int) -> object:
        import keras

        class _Crash(keras.callbacks.Callback):
            def on_epoch_end(self, index: int, logs: object = None) -> None:
                if index + 1 == epoch:
                    raise KeyboardInterrupt

        return _Crash()


def test_a_resumed_neighbor2neighbor_run_ends_with_the_same_weights(
    params: Params, tmp_path: Path
) -> None:
    """Its fitted model's layers and loss come back from the checkpoint (frame-to-frame's
    masked_mse was checked the same way once; left out to keep the module fast)."""
    from denoise.stages.train import _noisy_stream
    from denoise.training.loop import train_model

    config = noisy_params(params, tmp_path)
    config = dataclasses.replace(
        config, train=with_active(config.train, epochs=2, steps_per_epoch=3)
    )
    frames_dir = Path(config.paths.frames)
    write_frames(frames_dir, {"source": ("images", "noisy", translating_clip(6, 15))})
    manifest = pd.read_parquet(frames_dir / "manifest.parquet")

    def fit(directory: Path, callbacks: list[object] | None = None) -> object:
        stream = _noisy_stream(config, "cae_noisy", manifest)
        return train_model(
            "cae_noisy", config, stream, validation_pairs(), directory, print,
            extra_callbacks=callbacks or [],
        )[0]  # fmt: skip

    reference = fit(tmp_path / "uninterrupted")
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "interrupted", [CrashAfterEpoch(1)])
    resumed = fit(tmp_path / "interrupted")
    for expected, actual in zip(reference.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_the_train_stage_learns_from_the_noisy_video_alone(tmp_path: Path) -> None:
    """extract, a role column as extract writes it (noisy for one video), noise, then the
    train stage: the noisy model fine-tunes on the noisy video's clips and records the
    held-out frame-to-frame loss; a clean model would draw from the clean video alone."""
    import json

    from conftest import tiny_clip_params, write_tiny_video

    from denoise.stages.extract import run as run_extract
    from denoise.stages.noise import run as run_noise
    from denoise.stages.train import _training_data
    from denoise.stages.train import run as run_train

    config = tiny_clip_params(tmp_path)  # long.avi, with clips
    write_tiny_video(Path(config.paths.raw) / "clean.avi", num_frames=40, seed=3)
    config = noisy_params(config, tmp_path)
    config = dataclasses.replace(
        config,
        paths=dataclasses.replace(config.paths, frames=str(tmp_path / "data/frames")),
        train=with_active(config.train, epochs=1, steps_per_epoch=2),
    )
    run_extract(config)
    path = Path(config.paths.frames) / "manifest.parquet"
    manifest = pd.read_parquet(path)
    manifest["role"] = np.where(manifest["video"] == "long.avi", "noisy", "clean")
    manifest.to_parquet(path, index=False)
    run_noise(config)
    clean_stream, _ = _training_data(config, "paper_cae", manifest)
    clean_train = (manifest["video"] == "clean.avi") & (manifest["split"] == "train")
    assert len(clean_stream.frames(0)) == 4 and len(clean_stream._frames) == clean_train.sum()
    run_train(config)
    summary = json.loads((Path(config.paths.models) / "cae_noisy.json").read_text())
    assert summary["supervision"] == "noisy" and summary["noise"] is None
    assert summary["val_frame_to_frame"] == summary["val_loss"] > 0
    # its card's trained noise range: the noisy video's measured level (sources.parquet)
    measured = pd.read_parquet(Path(config.paths.frames) / "sources.parquet")
    level = float(measured.loc[measured["source"] == "long.avi", "noise_sigma"].iloc[0])
    assert summary["noise_range"] == [level, level]
