"""The one markdown table writer (core.markdown)."""

from __future__ import annotations

import pytest

from denoise.core.markdown import markdown_table


def test_a_table_is_a_header_a_rule_and_one_line_per_row() -> None:
    table = markdown_table(["method", "PSNR"], [["nlm", "29.96"], ["dncnn", 31.5]])
    assert table == "| method | PSNR |\n|---|---|\n| nlm | 29.96 |\n| dncnn | 31.5 |"
    assert markdown_table(["method"], []) == "| method |\n|---|"


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
        markdown_table(["method", "PSNR"], [["nlm", "29.96"], ["dncnn"]])
