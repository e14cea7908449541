"""denoise.evaluation.summary: the headline table and champion line `denoise run` ends with."""

from __future__ import annotations

from typing import Any

from denoise.evaluation.summary import champion_line, headline_metrics, headline_table


def _scores(psnr: float, ssim: float, ms: float) -> dict[str, float]:
    return {"psnr": psnr, "ssim": ssim, "ms_per_frame": ms, "images": 3}


METRICS: dict[str, Any] = {
    "sets": {
        "test": {
            "levels": {
                "gaussian-25": {
                    "noisy": _scores(20.2, 0.52, 0.0),
                    "nlm": _scores(29.96, 0.915, 5.8),
                    "bm3d": _scores(31.0, 0.93, 900.0),
                    "drunet_light": _scores(31.5, 0.91, 40.0),
                }
            }
        },
        "photographs": {
            "levels": {
                "gaussian-25": {
                    "noisy": _scores(20.1, 0.78, 0.0),
                    "nlm": _scores(24.17, 0.895, 6.0),
                    "drunet_light": _scores(24.0, 0.90, 41.0),
                }
            }
        },
    }
}


def test_the_headline_table_orders_methods_and_marks_the_best_of_each_column() -> None:
    header, rows, best = headline_table(METRICS, "gaussian-25", ["noisy", "nlm", "bm3d"])
    assert header == [
        "method",
        "test PSNR",
        "test SSIM",
        "photographs PSNR",
        "photographs SSIM",
        "ms/frame",
    ]
    assert [row[0] for row in rows] == ["noisy", "nlm", "bm3d", "drunet_light"]
    assert rows[2] == ["bm3d", "31.00", "0.930", "-", "-", "900.0"]
    # The noisy input's 0 ms is never "best"; NLM is the fastest method that denoises.
    assert best == {(3, 1), (2, 2), (1, 3), (3, 4), (1, 5)}


def test_the_champion_line_names_the_version_and_its_classical_rivals() -> None:
    moved = [
        {
            "registered_model": "denoise",
            "version": "3",
            "model": "drunet_light",
            "score": 31.5,
            "holds": "champion",
        }
    ]
    line = champion_line(moved, METRICS, "test", "gaussian-25")
    assert line == (
        "champion: denoise v3 (drunet_light), 31.50 dB PSNR on test at gaussian-25 "
        "(against NLM 29.96, BM3D 31.00)"
    )
    kept = [
        {
            "registered_model": "denoise",
            "version": "4",
            "model": "paper_cae",
            "score": 8.2,
            "holds": "challenger",
            "champion_version": "3",
            "champion_score": 31.5,
        }
    ]
    assert champion_line(kept, METRICS, "test", "gaussian-25").startswith(
        "champion: denoise v3 (unchanged), 31.50 dB"
    )
    assert champion_line([], METRICS, "test", "gaussian-25").startswith("champion: none")


def test_the_metrics_file_holds_the_champions_few_numbers() -> None:
    moved = [
        {"version": "3", "model": "drunet_light", "holds": "champion", "champion_version": None}
    ]
    sets = {"test": "test", "photos": "photographs"}
    headline = headline_metrics(moved, METRICS, sets, "gaussian-25", ["nlm", "bm3d"])
    assert headline == {
        "champion": 3,
        "test_psnr": 31.5,
        "test_ssim": 0.91,
        "photos_psnr": 24.0,
        "photos_ssim": 0.9,
        "ms_frame": 40.0,
        "classical": 31.0,
    }
    kept = [
        {"version": "4", "holds": "challenger", "champion_version": "3", "champion_score": 31.5}
    ]
    assert headline_metrics(kept, METRICS, sets, "gaussian-25", ["nlm"]) == {
        "champion": 3,
        "test_psnr": 31.5,
        "classical": 29.96,
    }
