"""Read Logs API TabSeparatedWithNames downloads (visits*.tsv, hits*.tsv parts) into DataFrames.

Columns are mapped by header name (the API's header order is not guaranteed) and only the columns the
scorer needs are parsed.  The hits' ``ym:pv:watchID`` (a join key that never leaves the scorer) becomes
exact uint64 and ``ym:pv:dateTime`` datetime64[s]: both are read as fixed-width bytes, with no Python
object per value, and checked by ``scorer.parsing`` (a UInt64 id above 2**63 never passes through
float).  Every other id stays text: visit and client ids are output as they came.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from scorer import parsing

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

_INT_FIELDS = frozenset({"ym:s:visitDuration", "ym:s:pageViews", "ym:s:bounce"})
_UINT64_FIELDS = frozenset({"ym:pv:watchID"})
_DATETIME_FIELDS = frozenset({"ym:pv:dateTime"})
_FIXED_WIDTH = {"uint64": parsing.ID_WIDTH, "datetime64[s]": parsing.DATETIME_WIDTH}
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


def _unescape_value(text: str) -> str:
    return _ESCAPE.sub(lambda m: _UNESCAPE.get(m.group(1), "\\" + m.group(1)), text)


def unescape(column: pd.Series) -> pd.Series:
    """Undo ClickHouse TSV escaping (\\t, \\n, \\\\ ...) in a text column."""
    has_escape = column.str.contains("\\", regex=False)
    if not has_escape.any():
        return column
    out = column.copy()
    out[has_escape] = column[has_escape].map(_unescape_value)
    return out


def _read_one(path: Path, fields: Sequence[str], types: dict[str, str]) -> pd.DataFrame:
    try:
        with path.open("r", encoding="utf-8", newline="") as fh:
            header = fh.readline().rstrip("\n").split("\t")
    except (OSError, UnicodeDecodeError) as exc:
        raise TsvError(f"{path}: cannot read: {exc}") from exc
    if header == [""]:
        raise TsvError(f"{path}: empty file, expected a TabSeparatedWithNames header")
    missing = [f for f in fields if f not in header]
    if missing:
        raise MissingColumn(f"{path}: missing column(s) {', '.join(missing)}; header has {', '.join(header)}")
    # uint64 and datetime64 columns come in as fixed-width bytes and are parsed (and checked) below.
    dtypes: dict[str, type | str] = {f: _read_dtype(types.get(f, "str")) for f in fields}
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            usecols=list(fields),
            dtype=dtypes,
            engine="c",
            quoting=csv.QUOTE_NONE,
            # Empty strings are values here (e.g. an empty URL), not missing data.
            na_filter=False,
            lineterminator="\n",
            encoding="utf-8",
        )
        for name, kind in types.items():
            raw = frame[name].to_numpy()
            if kind == "uint64":
                frame[name] = parsing.parse_fixed_ids(raw, name)
            elif kind == "datetime64[s]":
                frame[name] = parsing.parse_fixed_datetimes(raw, name).astype("datetime64[s]")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TsvError(f"{path}: {exc}") from exc
    return frame[list(fields)]


def _read_dtype(kind: str) -> type | str:
    if kind in _FIXED_WIDTH:
        return f"S{_FIXED_WIDTH[kind]}"
    return np.int64 if kind == "int64" else str


def _empty(kind: str) -> pd.Series:
    return pd.Series([], dtype=str) if kind == "str" else pd.Series(np.zeros(0, dtype=kind))


def read_tsv(
    paths: Iterable[Path | str],
    fields: Sequence[str],
    ints: Iterable[str] = (),
    escaped: Iterable[str] = (),
    uint64s: Iterable[str] = (),
    datetimes: Iterable[str] = (),
) -> pd.DataFrame:
    """Concatenate the parts, keeping ``fields`` (in that order).

    ``ints`` become int64, ``uint64s`` exact uint64 (decimal UInt64 ids), ``datetimes`` datetime64[s]
    ('YYYY-MM-DD HH:MM:SS', naive), the rest str.  Only the ``escaped`` columns are unescaped: ids,
    numbers and dates never hold escapes, and skipping them keeps large files fast.
    """
    types = (
        {f: "int64" for f in ints} | {f: "uint64" for f in uint64s} | {f: "datetime64[s]" for f in datetimes}
    )
    frames = [_read_one(Path(p), fields, {f: types[f] for f in fields if f in types}) for p in paths]
    if not frames:
        return pd.DataFrame({f: _empty(types.get(f, "str")) for f in fields}, columns=list(fields))
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    for name in escaped:
        frame[name] = unescape(frame[name])
    return frame


def read_visits(paths: Iterable[Path | str], fields: Sequence[str] = VISIT_FIELDS) -> pd.DataFrame:
    return read_tsv(paths, fields, ints=_INT_FIELDS & set(fields), escaped=_text_fields(fields))


def read_hits(paths: Iterable[Path | str], fields: Sequence[str] = HIT_FIELDS) -> pd.DataFrame:
    """Hits; ``ym:pv:watchID`` as uint64 and ``ym:pv:dateTime`` as datetime64[s] when asked for."""
    return read_tsv(
        paths,
        fields,
        escaped=_text_fields(fields),
        uint64s=_UINT64_FIELDS & set(fields),
        datetimes=_DATETIME_FIELDS & set(fields),
    )


def _text_fields(fields: Iterable[str]) -> list[str]:
    # Free-text Metrika fields; every other field we read is an id, number, date or code.
    return [f for f in fields if f.rsplit(":", 1)[-1] in {"startURL", "endURL", "URL", "referer", "title"}]
