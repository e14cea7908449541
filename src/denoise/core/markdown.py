"""Markdown tables: the one helper that writes every table the project prints or saves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def _line(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table, without a trailing newline: the header, a `|---|`
    rule, one line per row. Cells are written with str(), so format numbers before."""
    lines = [_line(header), "|" + "---|" * len(header)]
    for number, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"row {number} has {len(row)} cells for {len(header)} columns")
        lines.append(_line(row))
    return "\n".join(lines)
