"""Arrays and tables put aside under a key, in memory up to a budget and in files beyond it.

A day is read piece by piece and regrouped twice (by watchID, then by visit); what waits to be
regrouped goes here.  While it stays under ``budget`` bytes it is kept in memory; the append that
crosses the budget writes everything held so far to one new file (a run) in a private directory
made on first need inside ``work_dir``, so memory stays flat however large the day.  ``take`` gives
back what a key got, in the order it came, and forgets it; a run file is deleted once everything
in it was taken, and ``close`` removes the directory.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class _Stored:
    run: int
    offset: int  # of the first column; the others follow
    rows: int


class Spill:
    def __init__(self, work_dir: Path | str | None, budget: int, fall_back: bool = False) -> None:
        """Files go to ``work_dir`` (None: the system's temporary directory); with ``fall_back``, to
        the temporary directory when ``work_dir`` is not writable."""
        self._work_dir = Path(work_dir) if work_dir is not None else None
        self._fall_back = fall_back
        self._budget = budget
        self._dir: Path | None = None
        self._held = 0  # bytes in memory
        self._arrays: defaultdict[str, list[tuple[Array, ...]]] = defaultdict(list)
        self._tables: dict[str, pa.Table] = {}
        self._stored: defaultdict[str, list[_Stored]] = defaultdict(list)  # in order, before _arrays
        self._stored_tables: dict[str, tuple[int, int, int]] = {}  # run, offset, size
        self._runs: list[Path] = []
        self._readers: dict[int, io.BufferedReader] = {}
        self._left: list[int] = []  # entries of each run not taken yet
        self.spilled = 0  # bytes written to files, for the bench

    def __enter__(self) -> Spill:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._arrays.clear()
        self._tables.clear()
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def append(self, key: str, *columns: Array) -> None:
        """Add rows (columns of equal length, the same dtypes every time) under ``key``."""
        self._arrays[key].append(columns)
        self._held += sum(c.nbytes for c in columns)
        if self._held > self._budget:
            self._write_run()

    def put_table(self, key: str, table: pa.Table) -> None:
        self._tables[key] = table
        self._held += table.nbytes
        if self._held > self._budget:
            self._write_run()

    def take(self, key: str, dtypes: tuple[npt.DTypeLike, ...]) -> tuple[Array, ...]:
        """Every row added under ``key``, in order, as one array per column (empty if none)."""
        stored = self._stored.pop(key, [])
        chunks = self._arrays.pop(key, [])
        types = [np.dtype(d) for d in dtypes]
        rows = sum(s.rows for s in stored) + sum(c[0].size for c in chunks)
        if not stored and len(chunks) == 1:
            self._held -= sum(c.nbytes for c in chunks[0])
            return chunks[0]
        out = tuple(np.empty(rows, dtype=t) for t in types)
        at = 0
        for entry in stored:  # read straight into place: each column's rows lie one after another
            fh = self._reader(entry.run)
            fh.seek(entry.offset)
            for column in out:
                view = column[at : at + entry.rows].data.cast("B")
                if fh.readinto(view) != view.nbytes:
                    raise OSError(f"{self._runs[entry.run]}: short read")
            at += entry.rows
            self._taken(entry.run)
        for columns in chunks:
            n = columns[0].size
            for column, chunk in zip(out, columns, strict=True):
                column[at : at + n] = chunk
            at += n
            self._held -= sum(c.nbytes for c in columns)
        return out

    def take_table(self, key: str) -> pa.Table:
        if key in self._tables:
            table = self._tables.pop(key)
            self._held -= table.nbytes
            return table
        run, offset, size = self._stored_tables.pop(key)
        with pa.memory_map(str(self._runs[run])) as source:
            source.seek(offset)
            table = pa.ipc.open_stream(source.read_buffer(size)).read_all()  # maps the file: no copy
        self._taken(run)
        return table

    def _reader(self, run: int) -> io.BufferedReader:
        if run not in self._readers:
            self._readers[run] = self._runs[run].open("rb")
        return self._readers[run]

    def _taken(self, run: int) -> None:
        self._left[run] -= 1
        if self._left[run] == 0:
            reader = self._readers.pop(run, None)
            if reader is not None:
                reader.close()
            self._runs[run].unlink()  # a mapping still in use keeps its data

    def _write_run(self) -> None:
        if self._dir is None:
            try:
                self._dir = Path(tempfile.mkdtemp(prefix=".metrika-score-", dir=self._work_dir))
            except OSError:
                if not self._fall_back or self._work_dir is None:
                    raise
                self._dir = Path(tempfile.mkdtemp(prefix=".metrika-score-"))
        run = len(self._runs)
        path = self._dir / f"run{run}"
        entries = 0
        with path.open("wb") as fh:
            for key, chunks in self._arrays.items():
                self._stored[key].append(_Stored(run, fh.tell(), sum(c[0].size for c in chunks)))
                for i in range(len(chunks[0])):  # a column's rows of every chunk, then the next column
                    for columns in chunks:
                        fh.write(np.ascontiguousarray(columns[i]).data.cast("B"))
                entries += 1
            for key, table in self._tables.items():
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)
                data = sink.getvalue()
                self._stored_tables[key] = (run, fh.tell(), data.size)
                fh.write(data)
                entries += 1
            self.spilled += fh.tell()
        self._runs.append(path)
        self._left.append(entries)
        self._arrays.clear()
        self._tables.clear()
        self._held = 0
