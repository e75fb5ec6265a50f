"""Prepared logs: a log's parts rendered once into files, as Yandex keeps a processed request's parts in its
storage, and shared by every request of the same log (a re-run of a day meets prepared parts at once)."""

from __future__ import annotations

import asyncio
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sandbox.parts import chunk_bounds, part_bounds, render_rows

__all__ = ["PreparedLog", "PreparedLogs", "read_part"]

READ_BYTES = 1 << 20  # what one download write sends


@dataclass(frozen=True)
class PreparedLog:
    """The part files of one log; removed from disk once nothing refers to this object any more."""

    directory: tempfile.TemporaryDirectory[str]
    paths: tuple[Path, ...]
    sizes: tuple[int, ...]


def _render(frame: pd.DataFrame, fields: list[str], rows_per_part: int) -> PreparedLog:
    directory = tempfile.TemporaryDirectory(prefix="sandbox-log-")
    paths, sizes = [], []
    for number, (start, stop) in enumerate(part_bounds(len(frame), rows_per_part)):
        path = Path(directory.name) / f"part_{number}.tsv"
        with path.open("wb") as out:
            for lo, hi in chunk_bounds(start, stop):
                out.write(render_rows(frame, fields, lo, hi, header=lo == start))
        paths.append(path)
        sizes.append(path.stat().st_size)
    return PreparedLog(directory, tuple(paths), tuple(sizes))


class PreparedLogs:
    """Rendered logs by (frame, fields, rows per part), the `size` most recent kept; a request holds on to
    its own log, so an entry dropped from here stays readable for it."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        # keyed by the frame's id: the entry keeps the frame alive, so the id is not reused meanwhile
        self._logs: OrderedDict[
            tuple[int, tuple[str, ...], int], tuple[pd.DataFrame, asyncio.Task[PreparedLog]]
        ]
        self._logs = OrderedDict()

    async def get(self, frame: pd.DataFrame, fields: Sequence[str], rows_per_part: int) -> PreparedLog:
        key = (id(frame), tuple(fields), rows_per_part)
        entry = self._logs.get(key)
        if entry is None or (entry[1].done() and (entry[1].cancelled() or entry[1].exception() is not None)):
            task = asyncio.ensure_future(asyncio.to_thread(_render, frame, list(fields), rows_per_part))
            entry = (frame, task)
            self._logs[key] = entry
            while len(self._logs) > self.size:
                self._logs.popitem(last=False)
        else:
            self._logs.move_to_end(key)
        return await asyncio.shield(entry[1])


async def read_part(path: Path) -> AsyncIterator[bytes]:
    """A part file in READ_BYTES pieces, read off the event loop."""
    with await asyncio.to_thread(path.open, "rb") as part:
        while data := await asyncio.to_thread(part.read, READ_BYTES):
            yield data
