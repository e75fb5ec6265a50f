"""Read Logs API TabSeparatedWithNames downloads (visits*.tsv, hits*.tsv parts) with pyarrow.

Columns are mapped by header name (the API's header order is not guaranteed; extra columns are
skipped) and only the columns asked for are converted.  ClickHouse TSV has no quoting: a tab, line
break or backslash inside a value is written as ``\\t``, ``\\n``, ``\\\\``, so every tab splits
fields and every line break ends a row.  A part is read in pieces of whole rows (``units``), each
parsed on its own (``parse``, on any thread).  Kinds of column:

* ``uint64``: a decimal UInt64 (``ym:pv:watchID``), exact above 2**63, never through float;
* ``datetime``: ``YYYY-MM-DD HH:MM:SS`` (naive, the counter's clock) as timestamp[s];
* ``int64``: a number (``ym:s:visitDuration``...);
* ``text``: kept as it came, as Arrow binary (ids that are only output, like ``ym:s:visitID``, stay
  text; whoever outputs them checks their UTF-8 then, on the rows it outputs);
* ``escaped``: free text (URLs, titles) as UTF-8 strings, with the ClickHouse escapes undone.

``uint64``, ``datetime`` and ``int64`` values are converted by Arrow's CSV reader as it parses (the
hits' 5M ids and times per 1M visits: converting them as text afterwards cost a quarter of the
hits' read).  Anything that is not a number or a date-time, an id above 2**64 - 1, a negative id, an
impossible date (Feb 30, 24:00:00) or a fraction of a second is an error naming the file and the
column.  Arrow also takes a few other spellings of the same value, which the Logs API never writes:
spaces around a number, ``0x``-hexadecimal, ``T`` between date and time, a date without a time, a
time without seconds.  Text the scorer parses itself (``ym:s:dateTime``, ``ym:s:watchIDs``) is
checked strictly by ``scorer.parsing``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

if TYPE_CHECKING:  # pandas for the frame helpers only (see scorer.arrays)
    import pandas as pd

# What the scorer asks the Logs API for; a download may hold more columns, never fewer.
VISIT_FIELDS: tuple[str, ...] = (
    "ym:s:visitID",
    "ym:s:clientID",
    "ym:s:watchIDs",
    "ym:s:dateTime",
    "ym:s:visitDuration",
    "ym:s:pageViews",
    "ym:s:bounce",
    "ym:s:deviceCategory",
)
HIT_FIELDS: tuple[str, ...] = (
    "ym:pv:watchID",
    "ym:pv:dateTime",
)
VISIT_KINDS: dict[str, str] = {
    "ym:s:dateTime": "text",  # kept as text: it is output as it came (and parsed by the scorer)
    "ym:s:visitDuration": "int64",
    "ym:s:pageViews": "int64",
    "ym:s:bounce": "int64",
}
HIT_KINDS: dict[str, str] = {"ym:pv:watchID": "uint64", "ym:pv:dateTime": "datetime"}
# Free-text Metrika fields; every other field we read is an id, number, date or code.
_FREE_TEXT = frozenset({"startURL", "endURL", "URL", "referer", "title"})

BLOCK_BYTES = 1 << 24  # bytes of TSV parsed at a time: bounds the memory of one piece
_HEADER_BYTES = 1 << 20
_WINDOW = 1 << 16
_PARSE_BLOCK = 1 << 20  # Arrow parses a piece in blocks this size: they stay in cache
_ARROW_TYPES = {
    "uint64": pa.uint64(),
    "datetime": pa.timestamp("s"),
    "int64": pa.int64(),
    "text": pa.binary(),
    "escaped": pa.string(),
}
_PARSE = pcsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False, escape_char=False)
_ARROW_COLUMN = re.compile(r"In CSV column #(\d+): ")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPE = {"t": "\t", "n": "\n", "r": "\r", "0": "\0", "b": "\b", "f": "\f", "\\": "\\", "'": "'"}


class TsvError(ValueError):
    """A Logs API file that cannot be read as expected; the message names the file."""


class MissingColumn(TsvError):
    pass


def _natural_key(path: Path) -> tuple[object, ...]:
    # visits_10.tsv sorts after visits_9.tsv, as the parts were numbered.
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))


def find_parts(logs_dir: Path | str) -> tuple[list[Path], list[Path]]:
    """The visits*.tsv and hits*.tsv files in ``logs_dir``, each list in part order."""
    root = Path(logs_dir)
    if not root.is_dir():
        raise TsvError(f"{root}: not a directory")
    visits = sorted((p for p in root.glob("visits*.tsv") if p.is_file()), key=_natural_key)
    hits = sorted((p for p in root.glob("hits*.tsv") if p.is_file()), key=_natural_key)
    return visits, hits


def kinds_of(fields: Iterable[str], kinds: Mapping[str, str]) -> dict[str, str]:
    """``fields`` with their kind: as given in ``kinds``, free text escaped, anything else text."""
    return {f: kinds.get(f, "escaped" if f.rsplit(":", 1)[-1] in _FREE_TEXT else "text") for f in fields}


def _header(path: Path) -> list[str]:
    try:
        with path.open("rb") as fh:
            first = fh.readline(_HEADER_BYTES)
        header = first.decode("utf-8").rstrip("\r\n").split("\t")
    except (OSError, UnicodeDecodeError) as exc:
        raise TsvError(f"{path}: cannot read: {exc}") from exc
    if header == [""]:
        raise TsvError(f"{path}: empty file, expected a TabSeparatedWithNames header")
    return header


def check_columns(path: Path, kinds: Mapping[str, str]) -> None:
    """A missing column is an error naming the file and the column."""
    header = _header(path)
    missing = [f for f in kinds if f not in header]
    if missing:
        raise MissingColumn(f"{path}: missing column(s) {', '.join(missing)}; header has {', '.join(header)}")


@dataclass(frozen=True)
class Piece:
    """Whole rows of a part, bytes [start, end) of the file, to be parsed on their own."""

    path: Path
    head: bytes  # the header line
    start: int
    end: int


def units(path: Path, kinds: Mapping[str, str], block_bytes: int | None = None) -> Iterator[Piece]:
    """The file as pieces of about ``block_bytes`` of whole rows, each parsed with ``parse`` (on any
    thread: a piece is read there, behind a copy of the header line, as a small file of its own).

    Checks the header first (``check_columns``).  Only a little around each cut is read here, to end
    the piece with its last whole row.
    """
    check_columns(path, kinds)
    block_bytes = block_bytes or BLOCK_BYTES
    try:
        with path.open("rb") as fh:
            head = fh.readline()
            size = os.fstat(fh.fileno()).st_size
            start = len(head)
            if start == size:  # no rows: one piece, the header alone
                yield Piece(path, head, start, start)
            while start < size:
                end = _row_end(fh, min(start + block_bytes, size) - 1, size)  # a value never holds a break
                yield Piece(path, head, start, end)
                start = end
    except OSError as exc:
        raise TsvError(f"{path}: cannot read: {exc}") from exc


def _row_end(fh: BinaryIO, at: int, size: int) -> int:
    """One past the first line break at or after ``at`` (or the end of the file)."""
    while at < size:
        fh.seek(at)
        window = fh.read(_WINDOW)
        found = window.find(b"\n")
        if found >= 0:
            return at + found + 1
        at += len(window)
    return size


_BUFFERS = threading.local()  # each thread reads its pieces into one buffer, reused: no fresh pages


def _read(piece: Piece) -> pa.Buffer:
    head, length = len(piece.head), len(piece.head) + piece.end - piece.start
    buffer: npt.NDArray[np.uint8] | None = getattr(_BUFFERS, "buffer", None)
    if buffer is None or buffer.size < length:
        buffer = _BUFFERS.buffer = np.empty(max(length, BLOCK_BYTES + (BLOCK_BYTES >> 4)), dtype=np.uint8)
    buffer[:head] = np.frombuffer(piece.head, dtype=np.uint8)
    with piece.path.open("rb") as fh:
        fh.seek(piece.start)
        if fh.readinto(buffer[head:length].data) != length - head:
            raise OSError("the file changed while it was read")
    return pa.py_buffer(buffer[:length])


def parse(piece: Piece, kinds: Mapping[str, str]) -> pa.Table:
    """A piece of ``units`` as the columns of ``kinds`` (field -> kind), converted and checked.

    The table has the fields in the order of ``kinds``; ``uint64`` columns come as uint64,
    ``datetime`` ones as timestamp[s], ``int64`` as int64, ``text`` as binary, ``escaped`` as string.
    """
    convert = pcsv.ConvertOptions(
        include_columns=list(kinds),
        column_types={f: _ARROW_TYPES[k] for f, k in kinds.items()},
        # Empty strings are values here (e.g. an empty URL), not missing data.
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        null_values=[],
    )
    options = pcsv.ReadOptions(use_threads=False, block_size=_PARSE_BLOCK)
    try:
        data = _read(piece)
        # Arrow copies the values out: the buffer is free again once the table is made.
        table = pcsv.read_csv(
            pa.BufferReader(data), read_options=options, parse_options=_PARSE, convert_options=convert
        )
    except pa.ArrowInvalid as exc:
        header = piece.head.decode("utf-8", "replace").rstrip("\r\n").split("\t")
        raise TsvError(f"{piece.path}: {_name_column(str(exc), header)}") from exc
    except OSError as exc:
        raise TsvError(f"{piece.path}: cannot read: {exc}") from exc
    return _checked(table, kinds)


def batches(path: Path, kinds: Mapping[str, str], block_bytes: int | None = None) -> Iterator[pa.Table]:
    """``parse`` of each of the file's ``units``, in order, on this thread."""
    for piece in units(path, kinds, block_bytes):
        yield parse(piece, kinds)


def _name_column(message: str, header: Sequence[str]) -> str:
    """Arrow's 'In CSV column #3: ...' with the column's name."""
    found = _ARROW_COLUMN.search(message)
    if found is None or int(found.group(1)) >= len(header):
        return message
    return f"column {header[int(found.group(1))]}: {message[found.end() :]}"


def _checked(table: pa.Table, kinds: Mapping[str, str]) -> pa.Table:
    """The columns in the order of ``kinds`` (as Arrow's parse blocks left them: chunked), free text
    unescaped."""
    columns = [
        unescape(table.column(name).combine_chunks()) if kind == "escaped" else table.column(name)
        for name, kind in kinds.items()
    ]
    return pa.table(columns, names=list(kinds))


def read(paths: Iterable[Path | str], kinds: Mapping[str, str]) -> pa.Table:
    """All parts of one source as one table (for small days and tests; the scorer streams them)."""
    tables = [t for p in paths for t in batches(Path(p), kinds)]
    if not tables:
        return pa.table(
            [pa.array([], type=_result_type(k)) for k in kinds.values()],
            names=list(kinds),
        )
    return pa.concat_tables(tables)


def _result_type(kind: str) -> pa.DataType:
    return (
        pa.string()
        if kind == "escaped"
        else _ARROW_TYPES[kind]
        if kind == "text"
        else {
            "uint64": pa.uint64(),
            "datetime": pa.timestamp("s"),
            "int64": pa.int64(),
        }[kind]
    )


def _unescape_value(text: str) -> str:
    return _ESCAPE.sub(lambda m: _UNESCAPE.get(m.group(1), "\\" + m.group(1)), text)


def unescape(column: pa.StringArray) -> pa.StringArray:
    """Undo ClickHouse TSV escaping (\\t, \\n, \\\\, \\' ...) in a text column.

    Escapes are rare in real URLs, so only the values holding a backslash go through Python.
    """
    has_escape = pc.match_substring(column, "\\").to_numpy(zero_copy_only=False)
    if not has_escape.any():
        return column
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)
    values[has_escape] = [_unescape_value(v) for v in values[has_escape].tolist()]
    return pa.array(values, type=pa.string())


def as_text(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A ``text`` column as UTF-8 strings; TsvError if it is not UTF-8."""
    try:
        return pc.cast(column, pa.string())
    except pa.ArrowInvalid as exc:
        raise TsvError(f"not UTF-8 text: {exc}") from exc


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A table of ``batches`` as pandas: text as str, uint64/int64 as numpy ints, datetimes as
    datetime64[s]."""
    import pandas as pd

    return pd.DataFrame(
        {
            name: (
                pd.Series(as_text(column).to_pandas(), dtype=str)
                if pa.types.is_binary(column.type) or pa.types.is_string(column.type)
                else column.to_numpy()
            )
            for name, column in zip(table.column_names, table.columns, strict=True)
        },
        columns=table.column_names,
    )


def read_visits(paths: Iterable[Path | str], fields: Sequence[str] = VISIT_FIELDS) -> pd.DataFrame:
    """Visits as pandas (ints as int64, the rest as str)."""
    return to_frame(read(paths, kinds_of(fields, VISIT_KINDS)))


def read_hits(paths: Iterable[Path | str], fields: Sequence[str] = HIT_FIELDS) -> pd.DataFrame:
    """Hits; ``ym:pv:watchID`` as uint64 and ``ym:pv:dateTime`` as datetime64[s] when asked for."""
    return to_frame(read(paths, kinds_of(fields, HIT_KINDS)))
