"""Splitting a log into parts and rendering them as TabSeparatedWithNames."""

from __future__ import annotations

import io

import pandas as pd

from sandbox.simulator import write_tsv

__all__ = ["CHUNK_ROWS", "chunk_bounds", "measure_parts", "part_bounds", "render_rows"]

#: rows rendered per write while streaming a part
CHUNK_ROWS = 5_000


def part_bounds(n_rows: int, rows_per_part: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of each part; an empty log still has one (header-only) part."""
    if n_rows == 0:
        return [(0, 0)]
    return [(start, min(start + rows_per_part, n_rows)) for start in range(0, n_rows, rows_per_part)]


def chunk_bounds(start: int, stop: int, chunk_rows: int = CHUNK_ROWS) -> list[tuple[int, int]]:
    """Row ranges of the chunks of one part; the first chunk carries the header."""
    if start == stop:
        return [(start, stop)]
    return [(lo, min(lo + chunk_rows, stop)) for lo in range(start, stop, chunk_rows)]


def render_rows(frame: pd.DataFrame, fields: list[str], start: int, stop: int, header: bool) -> bytes:
    """UTF-8 TSV of rows [start, stop), with the header line only if ``header``."""
    out = io.StringIO()
    write_tsv(frame.iloc[start:stop], fields, out)
    text = out.getvalue()
    if not header:
        text = text[text.index("\n") + 1 :]
    return text.encode("utf-8")


def measure_parts(frame: pd.DataFrame, fields: list[str], rows_per_part: int) -> list[int]:
    """Byte size of every part, rendered exactly as it will be downloaded."""
    sizes: list[int] = []
    for start, stop in part_bounds(len(frame), rows_per_part):
        sizes.append(
            sum(
                len(render_rows(frame, fields, lo, hi, header=lo == start))
                for lo, hi in chunk_bounds(start, stop)
            )
        )
    return sizes
