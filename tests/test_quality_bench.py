"""bench/quality.py on tiny hand-made evaluation sets, the noisy and blur baselines and one
untrained model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, write_params

from denoise.core.config import Params, default_params
from denoise.core.metrics import psnr
from denoise.core.noise import add_gaussian_noise, set_rng
from denoise.data.evalsets import load_photograph

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import quality  # bench/quality.py


def _write_evalsets(params: Params) -> dict[str, np.ndarray]:
    """A test set of 3 smooth random 32x32 frames and photographs of 2 scikit-image stills,
    laid out as the noise stage writes them (clean.npy and index.json; no noisy levels)."""
    rng = np.random.default_rng(1)
    test = np.repeat(np.repeat(rng.random((3, 8, 8, 3), dtype=np.float32), 4, 1), 4, 2)
    photographs = np.stack([load_photograph(name, 32) for name in ("astronaut", "coffee")])
    sets = {"test": test, "photographs": photographs}
    root = Path(params.paths.evalsets)
    index: dict = {"seed": params.seed, "sets": {}}
    for name, clean in sets.items():
        (root / name).mkdir(parents=True)
        np.save(root / name / "clean.npy", clean)
        images = [f"{name}-{position}" for position in range(len(clean))]
        index["sets"][name] = {"images": images, "shape": list(clean.shape), "levels": {}}
    (root / "index.json").write_text(json.dumps(index))
    return sets


def _save_untrained_model(directory: Path) -> None:
    from denoise.models.build import count_parameters
    from denoise.models.paper_cae import paper_cae

    directory.mkdir(parents=True)
    model = paper_cae()
    model.save(directory / "paper_cae.keras")
    summary = {
        "parameters": count_parameters(model),
        "train_seconds": 0.0,
        "epochs": 0,
        "architecture": "paper_cae",
        "noise": {"kind": "gaussian", "sigma": 25, "sigma_min": 5, "sigma_max": 55},
    }
    (directory / "paper_cae.json").write_text(json.dumps(summary))


def test_noisy_inputs_are_one_draw_seen_unclipped_and_as_saved() -> None:
    clean = np.full((2, 16, 16, 3), 0.98, np.float32)
    inputs = quality.noisy_inputs(clean, 25.0, 0, "test")
    expected = add_gaussian_noise(clean, 25.0, set_rng(0, "quality", "test", "25"))
    np.testing.assert_array_equal(inputs["unclipped"], expected)
    assert inputs["unclipped"].max() > 1.0, "unclipped noise goes past 1"
    saved = inputs["as saved"]
    assert saved.min() >= 0.0 and saved.max() <= 1.0
    np.testing.assert_allclose(saved * 255.0, np.round(saved * 255.0), atol=1e-4)
    np.testing.assert_allclose(saved, np.round(np.clip(expected, 0, 1) * 255) / 255, atol=1e-7)


def test_bench_scores_every_method_on_identical_inputs(
    params: Params, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = _write_evalsets(params)
    _save_untrained_model(Path(params.paths.models))
    params_file = write_params(params, tmp_path / "params.yaml")
    out = tmp_path / "quality"
    options = ["--methods", "noisy", "blur", "paper_cae", "--sigmas", "25"]
    report = quality.main([*options, "--params", str(params_file), "--out", str(out)])

    saved = json.loads((out / "quality.json").read_text())
    names = ["photographs-0", "photographs-1"]
    expected_set = {"images": 2, "height": 32, "width": 32, "names": names, "bm3d_images": None}
    assert saved["sets"]["photographs"] == expected_set
    assert saved["seed"] == params.seed and "--methods" in saved["command"]
    assert saved["methods"] == ["noisy", "blur", "paper_cae"]  # table order (JSON keys sorted)
    assert saved["models"]["paper_cae"]["parameters"] == 29_507
    assert saved["models"]["paper_cae"]["profile"] is None
    for set_name, clean in sets.items():
        assert set(saved["results"][set_name]) == {"unclipped", "as saved"}
        noisy = add_gaussian_noise(clean, 25.0, set_rng(params.seed, "quality", set_name, "25"))
        by_hand = np.round(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0
        for variant, inputs in (("unclipped", noisy), ("as saved", by_hand)):
            level = saved["results"][set_name][variant]["25"]
            assert set(level) == {"noisy", "blur", "paper_cae"}
            expected = np.mean([psnr(*pair) for pair in zip(clean, inputs, strict=True)])
            assert level["noisy"]["psnr"] == pytest.approx(expected, abs=1e-4)
            assert all(result["images"] == len(clean) for result in level.values())
            assert all(result["ms_per_frame"] > 0 for result in level.values())

    markdown = (out / "quality.md").read_text()
    assert capsys.readouterr().out.strip() == markdown.strip()
    for heading in ("test (3 images, 32x32), unclipped", "photographs (2 images, 32x32), as saved"):
        assert f"## {heading}" in markdown
    header = "| method | sigma 25 PSNR / SSIM | ms/frame | parameters | train s | training noise |"
    assert markdown.count(header) == 4  # two sets, two variants
    assert "| paper_cae |" in markdown and "29,507" in markdown and "sigma 25 |" in markdown
    # Without BM3D every finding but the one against NLM/BM3D is skipped, saying why.
    statuses = {finding["name"]: finding["status"] for finding in report["findings"]}
    assert list(statuses.values()) == ["skipped"] * 4
    assert "bm3d was not run" in markdown and "## Findings" in markdown


def _noisy_and_paper_cae(params: Params, tmp_path: Path) -> tuple[list[str], list[str]]:
    """quality.py's options for noisy and an untrained paper_cae at sigma 25, and its --out."""
    _write_evalsets(params)
    _save_untrained_model(Path(params.paths.models))
    params_file = write_params(params, tmp_path / "params.yaml")
    options = ["--methods", "noisy", "paper_cae", "--sigmas", "25", "--params", str(params_file)]
    return options, ["--out", str(tmp_path / "quality")]


def test_self_ensemble_is_scored_as_a_method_of_its_own(params: Params, tmp_path: Path) -> None:
    options, out = _noisy_and_paper_cae(params, tmp_path)
    report = quality.main([*options, "--self-ensemble", "paper_cae", *out])
    assert report["methods"] == ["noisy", "paper_cae", "paper_cae+x8"]
    assert report["models"]["paper_cae+x8"] == report["models"]["paper_cae"]
    level = report["results"]["test"]["unclipped"]["25"]
    # An untrained paper_cae is nearly constant but not orientation-invariant: its ensemble
    # scores otherwise (here by about 3e-5 dB; the runs are deterministic).
    assert level["paper_cae+x8"]["psnr"] != pytest.approx(level["paper_cae"]["psnr"], abs=1e-6)
    with pytest.raises(SystemExit, match="--self-ensemble: blur not among the models scored"):
        quality.main([*options, "--self-ensemble", "blur", *out])


def test_bfloat16_is_scored_as_a_method_of_its_own(params: Params, tmp_path: Path) -> None:
    options, out = _noisy_and_paper_cae(params, tmp_path)
    report = quality.main(
        [*options, "--bfloat16", "paper_cae", "--self-ensemble", "paper_cae", *out]
    )
    assert report["methods"] == ["noisy", "paper_cae", "paper_cae+x8", "paper_cae+bf16"]
    level = report["results"]["test"]["unclipped"]["25"]
    # bfloat16 arithmetic changes the output, by about its resolution (8 bits of mantissa).
    gap = abs(level["paper_cae+bf16"]["psnr"] - level["paper_cae"]["psnr"])
    assert 0 < gap < 0.5
    with pytest.raises(SystemExit, match="--bfloat16: blur not among the models scored"):
        quality.main([*options, "--bfloat16", "blur", *out])


def _result(psnr_value: float, ms: float, images: int = 2) -> dict:
    return {
        "psnr": psnr_value,
        "ssim": 0.5,
        "ms_per_frame": ms,
        "images": images,
        "psnr_per_image": [psnr_value] * images,
        "ssim_per_image": [0.5] * images,
    }


def test_findings_are_computed_from_the_numbers() -> None:
    level = {
        "nlm": _result(29.0, 100.0),
        "bm3d": _result(31.0, 9000.0, images=1),
        "dncnn": _result(31.6, 400.0),
        "dncnn_s25": _result(31.8, 500.0),
        "tiny": _result(30.0, 100.0),
    }
    blind = {"kind": "gaussian_blind", "sigma_min": 5, "sigma_max": 55}
    models = {
        "dncnn": {"architecture": "dncnn", "noise": blind},
        "dncnn_s25": {"architecture": "dncnn", "noise": {"kind": "gaussian", "sigma": 25}},
        "tiny": {"architecture": "paper_cae", "noise": blind},
    }
    results = {"unclipped": {"25": level}, "as saved": {"25": level}}
    report = {
        "results": {"test": results, "photographs": results},
        "sets": {"test": {"images": 2}, "photographs": {"images": 2}},
        "models": models,
        # params.yaml: headline sigma 25, goal 0.5 dB, speed-ups 20 and 50
        "targets": quality.targets(default_params()),
    }
    test_bm3d, photographs, speed, pairs = quality.findings(report)
    assert test_bm3d["model"] == "dncnn_s25" and test_bm3d["gap_db"] == pytest.approx(0.8)
    assert test_bm3d["goal_met"] and "on the 1 image it ran on" in test_bm3d["text"]
    gaps = {item["reference"]: item["gap_db"] for item in photographs["comparisons"]}
    assert gaps == pytest.approx({"nlm": 2.8, "bm3d": 0.8})
    assert speed["fastest_model_at_least_bm3d"] == "dncnn"  # 400 ms against dncnn_s25's 500
    assert speed["best_model_within_fast_speedup"] == "dncnn"  # 400 <= 9000 / 20, beats tiny
    assert not speed["within_stretch_speedup"]  # 400 > 180
    (pair,) = pairs["pairs"]
    assert pair["blind"] == "dncnn" and pair["non_blind"] == "dncnn_s25"
    assert pair["gap_db"] == pytest.approx(-0.2) and pair["within_target"]

    # "As good as BM3D" is judged on the test frames where BM3D ran there, whatever the
    # photographs say; without BM3D on the test frames, on the photographs.
    harder = {**level, "bm3d": _result(32.0, 9000.0, images=1)}
    report["results"]["photographs"] = {"unclipped": {"25": harder}, "as saved": {"25": harder}}
    speed = quality.findings(report)[2]
    assert speed["fastest_model_at_least_bm3d"] == "dncnn" and speed["judged_on"] == "test"
    del report["results"]["test"]
    speed = quality.findings(report)[2]
    assert speed["fastest_model_at_least_bm3d"] is None and speed["judged_on"] == "photographs"
