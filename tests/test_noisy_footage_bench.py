"""bench/noisy_footage.py's pure parts: the rank agreement, the targets and the page it
rewrites between its markers (the benchmark itself takes half an hour)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from denoise.core.config import default_params

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import noisy_footage  # bench/noisy_footage.py


def test_the_rank_agreement_counts_the_pairs_ordered_differently() -> None:
    same = [("a", 30.0, 20.0), ("b", 29.0, 19.5), ("c", 25.0, 18.0)]
    agreement = noisy_footage.rank_agreement(same)
    assert agreement["tau"] == pytest.approx(1.0) and agreement["discordant"] == []
    assert agreement["best_psnr"] == agreement["best_f2f"] == "a"
    swapped = [("a", 30.0, 19.0), ("b", 29.0, 19.5), ("c", 25.0, 18.0)]
    agreement = noisy_footage.rank_agreement(swapped)
    assert agreement["discordant"] == [("a", "b")] and agreement["best_f2f"] == "b"
    assert agreement["tau"] == pytest.approx(1 / 3)


def test_each_target_says_met_or_by_how_much_it_is_missed() -> None:
    methods = {
        "frame-to-frame": {"psnr": 30.0},
        "shipped": {"psnr": 29.5},
        "oracle": {"psnr": 30.2},
        "bm3d": {"psnr": 30.4},
    }
    lines = noisy_footage.target_lines({"methods": methods}, default_params())
    assert lines == [
        "- frame-to-frame above the shipped model: +0.50 dB (target +1.00): missed by 0.50 dB",
        "- frame-to-frame against the oracle: -0.20 dB (target -0.50): met",
        "- frame-to-frame above BM3D (estimated sigma): -0.40 dB (target +0.00): missed by 0.40 dB",
    ]


def test_the_page_is_rewritten_between_its_markers_only(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\nbefore\n{noisy_footage.BEGIN}\nold\n{noisy_footage.END}\nafter\n")
    noisy_footage.write_page(page, "new table\n")
    assert page.read_text() == (
        f"# Title\n\nbefore\n{noisy_footage.BEGIN}\nnew table\n{noisy_footage.END}\nafter\n"
    )
    fresh = tmp_path / "fresh.md"
    noisy_footage.write_page(fresh, "new table\n")
    assert "new table\n" in fresh.read_text() and fresh.read_text().startswith("# ")
