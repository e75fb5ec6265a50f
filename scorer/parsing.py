"""Text -> numbers for the scorer: decimal UInt64 ids, id arrays like ``[1,2,3]``, and date-times.

Ids become exact uint64 (never via float or int64), date-times seconds since 1970-01-01 on the
counter's own clock, both with integer arithmetic on the raw bytes.  Two inputs are accepted:

* fixed-width byte arrays (numpy ``S<n>``, NUL-padded), which ``scorer.tsv`` reads straight from
  the files without making a Python object per value; and
* pandas text columns, which are first turned into such arrays (or, for the long ``watchIDs``
  arrays, joined into one buffer a chunk at a time).

Everything is checked: a value that is not exactly a decimal UInt64, a ``[id,id,...]`` array, or a
valid ``YYYY-MM-DD HH:MM:SS`` raises ``FeatureError``.  Work runs in chunks on a few threads (numpy
releases the GIL), chunk-sized temporaries staying in cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pandas as pd

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Fixed = npt.NDArray[np.bytes_]

ROWS_PER_CHUNK = 1 << 15  # fixed-width values parsed at a time
LISTS_PER_CHUNK = 1 << 13  # watchIDs arrays parsed at a time
# numpy releases the GIL in the heavy parts, so chunks run on a few threads.
THREADS = max(1, min(4, os.cpu_count() or 1))
_WORKER = "scorer-worker"

MAX_DIGITS = 20  # 2**64 - 1 = 18446744073709551615
ID_WIDTH = MAX_DIGITS + 1  # fixed-width ids: one byte more than any valid id, so longer ones show
DATETIME_WIDTH = 20  # "YYYY-MM-DD HH:MM:SS" is 19 bytes; the 20th must stay NUL
_PAD = MAX_DIGITS  # bytes in front of a buffer: every 20-byte window ending at an id stays inside
_PAD_TEXT = "\n" * (_PAD - 1)  # joined with '\n' to the rows: _PAD newlines before the first row
_DIGIT, _NL, _COMMA, _OPEN, _CLOSE = 48, 10, 44, 91, 93
_NIBBLES8 = 0x0F0F0F0F0F0F0F0F  # an ASCII digit's low nibble is its value


def _keep(width: int, back: int) -> npt.NDArray[np.unsignedinteger]:
    """Indexed by id length: the nibble mask of the ``width``-byte window starting ``back`` bytes
    before the id's end, with the window's bytes in front of the id (the low ones) cleared."""
    dtype = np.uint32 if width == 4 else np.uint64
    out = []
    for length in range(MAX_DIGITS + 1):
        foreign = min(width, max(0, back - length))  # leading window bytes in front of the id
        out.append(((_NIBBLES8 & ((1 << (8 * width)) - 1)) >> (8 * foreign)) << (8 * foreign))
    return np.array(out, dtype=dtype)


_KEEP_LOW8, _KEEP_MID8, _KEEP_TOP4 = _keep(8, 8), _keep(8, 16), _keep(4, 20)
_E8 = np.uint64(10**8)
_E16 = np.uint64(10**16)


class FeatureError(ValueError):
    """Input that cannot be turned into features (malformed ids or dates)."""


def workers() -> ThreadPoolExecutor:
    """A pool of THREADS threads; work it runs that calls ``for_chunks`` stays on its own thread."""
    return ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix=_WORKER)


def for_chunks(n: int, size: int, work: Callable[[int, int], None]) -> None:
    """Run ``work(lo, hi)`` over [0, n) in chunks of ``size``; each call writes only its own slice."""
    bounds = [(lo, min(n, lo + size)) for lo in range(0, n, size)]
    if THREADS == 1 or len(bounds) < 2 or threading.current_thread().name.startswith(_WORKER):
        for lo, hi in bounds:
            work(lo, hi)
        return
    with workers() as pool:
        for future in [pool.submit(work, lo, hi) for lo, hi in bounds]:
            future.result()


def _fixed(values: pd.Series, width: int, what: str) -> Fixed:
    """A text column as fixed-width ASCII bytes; longer values keep ``width`` bytes (then fail checks)."""
    try:
        fixed: Fixed = values.to_numpy(dtype=object).astype(f"S{width}")
    except (UnicodeEncodeError, TypeError, ValueError) as exc:
        raise FeatureError(f"{what}: a value is missing or not ASCII") from exc
    return fixed


def _swar4(x: npt.NDArray[np.uint32]) -> U64:
    """Four digit nibbles (first digit in the low byte, upper nibbles cleared) -> their value.

    Pairs of lanes are combined by one multiply each (x * (10 * 2**8 + 1) puts 10 * d0 + d1 in a lane);
    what overflows the word is never needed.
    """
    x = (x * np.uint32(2561)) >> np.uint32(8)
    x = ((x & np.uint32(0x00FF00FF)) * np.uint32(6553601)) >> np.uint32(16)
    return x.astype(np.uint64)


def _swar8(x: U64) -> U64:
    """Eight digit nibbles (first digit in the low byte, upper nibbles cleared) -> their value."""
    x = (x * np.uint64(2561)) >> np.uint64(8)
    x = ((x & np.uint64(0x00FF00FF00FF00FF)) * np.uint64(6553601)) >> np.uint64(16)
    return ((x & np.uint64(0x0000FFFF0000FFFF)) * np.uint64(42949672960001)) >> np.uint64(32)


def _runs_to_uint64(buf: U8, starts: I64, ends: I64, what: str) -> U64:
    """Digit runs ``buf[starts:ends]`` (checked to be digits by the caller) as exact uint64.

    The id's last 20 bytes are read as 4 + 8 + 8 little-endian bytes; bytes in front of the id are
    masked off, so short ids need no special case.  ``buf`` has _PAD bytes before any id.
    """
    lengths = ends - starts
    if lengths.size == 0:
        return np.zeros(0, dtype=np.uint64)
    longest, shortest = int(lengths.max()), int(lengths.min())
    if shortest < 1:
        raise FeatureError(f"{what}: empty id")
    if longest > MAX_DIGITS:
        raise FeatureError(f"{what}: id with {longest} digits does not fit UInt64")
    # Unaligned views at every byte offset: each window is a single gather.
    words4 = np.ndarray((buf.size - 3,), dtype="<u4", buffer=buf, strides=(1,))
    words8 = np.ndarray((buf.size - 7,), dtype="<u8", buffer=buf, strides=(1,))

    def keep(table: npt.NDArray[np.unsignedinteger], back: int) -> npt.NDArray[np.unsignedinteger]:
        # One mask for all when every id fills the window, else one per id.
        return table[MAX_DIGITS : MAX_DIGITS + 1] if shortest >= back else table[lengths]

    value = _swar8(words8[ends - 8] & keep(_KEEP_LOW8, 8))
    if longest > 8:
        value += _swar8(words8[ends - 16] & keep(_KEEP_MID8, 16)) * _E8
    if longest > 16:
        value += _swar4(words4[ends - 20] & keep(_KEEP_TOP4, 20)) * _E16
    if longest == MAX_DIGITS:
        # Past 2**64 a 20-digit id wraps below 10**19, or starts with 2..9.
        twenty = lengths == MAX_DIGITS
        if (twenty & ((buf[starts] > ord("1")) | (value < np.uint64(10**19)))).any():
            raise FeatureError(f"{what}: id does not fit UInt64")
    return value


def _is_digit(buf: U8) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = (buf - np.uint8(_DIGIT)) < 10
    return out


def parse_fixed_ids(values: Fixed, what: str = "id") -> U64:
    """Fixed-width bytes (e.g. ``S21``) holding one decimal UInt64 each, as exact uint64."""
    if values.dtype.kind != "S":
        raise TypeError(f"{what}: expected a numpy bytes array, got {values.dtype}")
    values = np.ascontiguousarray(values)
    width = values.dtype.itemsize
    out = np.empty(values.size, dtype=np.uint64)

    def work(lo: int, hi: int) -> None:
        chunk = values[lo:hi]
        lengths = np.char.str_len(chunk).astype(np.int64)
        buf = np.empty(_PAD + chunk.size * width, dtype=np.uint8)
        buf[:_PAD] = 0
        buf[_PAD:] = chunk.view(np.uint8)
        # Values are left-aligned and NUL-padded: all digits, one per byte of the value, and no other
        # byte (a NUL inside the value would count in its length but not as a digit).
        if np.count_nonzero(_is_digit(buf)) != int(lengths.sum()):
            raise FeatureError(f"{what}: expected exactly one decimal id per value")
        starts = _PAD + np.arange(chunk.size, dtype=np.int64) * width
        out[lo:hi] = _runs_to_uint64(buf, starts, starts + lengths, what)

    for_chunks(values.size, ROWS_PER_CHUNK, work)
    return out


def parse_ids(values: pd.Series, what: str = "id") -> U64:
    """One decimal UInt64 per row (e.g. ym:s:visitID) as uint64, exact above 2**63."""
    if pd.api.types.is_integer_dtype(values.dtype):
        if pd.api.types.is_signed_integer_dtype(values.dtype) and bool((values < 0).any()):
            raise FeatureError(f"{what}: negative id")
        exact: U64 = values.to_numpy(dtype=np.uint64)
        return exact
    return parse_fixed_ids(_fixed(values, ID_WIDTH, what), what)


def _text_bytes(texts: list[object], what: str) -> U8:
    """_PAD newlines + rows joined by '\n' + '\n', as bytes: one C-level pass over the rows."""
    try:
        raw = "\n".join([_PAD_TEXT, *texts, ""]).encode("ascii")  # type: ignore[list-item]
    except (UnicodeEncodeError, TypeError) as exc:
        raise FeatureError(f"{what}: a value is missing or not ASCII") from exc
    return np.frombuffer(raw, dtype=np.uint8)


def parse_lists_chunk(texts: list[object], what: str = "ym:s:watchIDs") -> tuple[U64, I64, I64]:
    """ClickHouse arrays '[1,2,3]' as (all ids, row each id came from, ids per row)."""
    return parse_lists_bytes(lists_bytes(texts, what), len(texts), what)


def lists_bytes(texts: list[object], what: str = "ym:s:watchIDs") -> U8:
    """The rows' text as parse_lists_bytes takes it. Holds the GIL (Python strings), unlike the parse."""
    return _text_bytes(texts, what) if texts else np.zeros(0, dtype=np.uint8)


def parse_lists_bytes(buf: U8, n: int, what: str = "ym:s:watchIDs") -> tuple[U64, I64, I64]:
    """parse_lists_chunk of the ``n`` rows that lists_bytes turned into ``buf``."""
    if n == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # Every byte that is not a digit, in order (the buffer starts and ends with '\n'): a digit run sits
    # between two of them that are more than one byte apart.
    other = np.flatnonzero((buf - np.uint8(_DIGIT)) > np.uint8(9))
    run = np.diff(other) > 1
    starts, ends = other[:-1][run] + 1, other[1:][run]
    line_breaks = np.flatnonzero(buf[other] == _NL)[_PAD - 1 :]  # before the first row, then after each
    if line_breaks.size != n + 1:
        raise FeatureError(f"{what}: a value holds a line break")
    newlines = other[line_breaks]
    runs_before = np.zeros(other.size, dtype=np.int64)  # digit runs before each non-digit byte
    np.cumsum(run, out=runs_before[1:])
    per_row = np.diff(runs_before[line_breaks])
    # A row that opens with '[' and closes with ']' holds at least its digits plus one byte between
    # neighbouring ids.  With not a byte more in all rows together, each row is '[' + ids joined by
    # single bytes + ']'; those bytes are ',' when every id is followed by ',' or ']', and ']' only
    # as often as there are rows with ids.
    after = buf[ends]
    n_close = int(np.count_nonzero(after == _CLOSE))
    nonempty = int(np.count_nonzero(per_row))
    row_bytes = buf.size - _PAD - n
    well_formed = (
        bool(np.all(buf[newlines[:-1] + 1] == _OPEN))
        and bool(np.all(buf[newlines[1:] - 1] == _CLOSE))
        and row_bytes == 2 * n + int(ends.sum() - starts.sum()) + starts.size - nonempty
        and n_close == nonempty
        and n_close + int(np.count_nonzero(after == _COMMA)) == starts.size
    )
    if not well_formed:
        raise FeatureError(f"{what}: expected arrays of decimal ids like [1,2,3]")
    owner = np.repeat(np.arange(n, dtype=np.int64), per_row)
    return _runs_to_uint64(buf, starts, ends, what), owner, per_row


def parse_id_lists(values: pd.Series, what: str = "ym:s:watchIDs") -> tuple[U64, I64]:
    """ClickHouse arrays '[1,2,3]' as (all ids, row position each id came from)."""
    texts = values.to_numpy(dtype=object)
    ids, owners = [], []
    for lo in range(0, len(texts), LISTS_PER_CHUNK):
        chunk_ids, chunk_owner, _ = parse_lists_chunk(texts[lo : lo + LISTS_PER_CHUNK].tolist(), what)
        ids.append(chunk_ids)
        owners.append(chunk_owner + lo)
    if not ids:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return np.concatenate(ids), np.concatenate(owners)


_DT_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord(" "), 13: ord(":"), 16: ord(":"), 19: 0}
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _datetimes_chunk(values: Fixed, what: str) -> I64:
    n = values.size
    buf = np.ascontiguousarray(values).view(np.uint8)

    def field(offset: int, dtype: str) -> npt.NDArray[np.unsignedinteger]:
        # The same field of every value: a strided view, no copy.
        return np.ndarray((n,), dtype=dtype, buffer=buf, offset=offset, strides=(DATETIME_WIDTH,))

    year4 = field(0, "<u4") - np.uint32(0x30303030)
    pairs = [field(pos, "<u2") - np.uint16(0x3030) for pos in (5, 8, 11, 14, 17)]
    # A non-digit byte leaves some byte above 9 after the subtraction (borrows wrap high).
    if (
        not all(bool(np.all(field(pos, "u1") == ch)) for pos, ch in _DT_SEPARATORS.items())
        or bool((year4.view(np.uint8) > 9).any())
        or any(bool(((p & 0xFF) > 9).any() | ((p >> 8) > 9).any()) for p in pairs)
    ):
        raise FeatureError(f"{what}: expected date-times like 2024-03-01 10:00:00")
    year = _swar4(year4).astype(np.int64)
    month, day, hour, minute, sec = (((p & 0xFF) * 10 + (p >> 8)).astype(np.int64) for p in pairs)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    valid = (month >= 1) & (month <= 12) & (hour < 24) & (minute < 60) & (sec < 60) & (day >= 1)
    valid &= day <= _MONTH_DAYS[np.clip(month, 0, 12)] + ((month == 2) & leap)
    if not valid.all():
        raise FeatureError(f"{what}: invalid date-time")
    # days_from_civil (H. Hinnant): proleptic Gregorian calendar.
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    seconds: I64 = (era * 146097 + doe - 719468) * 86400 + hour * 3600 + minute * 60 + sec
    return seconds


def parse_fixed_datetimes(values: Fixed, what: str = "dateTime") -> I64:
    """Fixed-width bytes ``S20`` holding 'YYYY-MM-DD HH:MM:SS' each, as seconds since 1970-01-01."""
    if values.dtype != np.dtype(f"S{DATETIME_WIDTH}"):
        raise TypeError(f"{what}: expected S{DATETIME_WIDTH} bytes, got {values.dtype}")
    out = np.empty(values.size, dtype=np.int64)

    def work(lo: int, hi: int) -> None:
        out[lo:hi] = _datetimes_chunk(values[lo:hi], what)

    for_chunks(values.size, ROWS_PER_CHUNK, work)
    return out


def parse_datetimes(values: pd.Series, what: str = "dateTime") -> I64:
    """'YYYY-MM-DD HH:MM:SS' (counter-local, naive) as seconds since 1970-01-01 on that same clock.

    A datetime64 column (as ``scorer.tsv`` reads hits) is taken as is, in whole seconds.
    """
    if pd.api.types.is_datetime64_dtype(values.dtype):
        if bool(values.isna().any()):
            raise FeatureError(f"{what}: missing date-time")
        seconds: I64 = values.to_numpy(dtype="datetime64[s]").view(np.int64)
        return seconds
    return parse_fixed_datetimes(datetime_bytes(values, what), what)


def datetime_bytes(values: pd.Series, what: str = "dateTime") -> Fixed:
    """Date-time texts as the ``S20`` parse_fixed_datetimes takes. Holds the GIL, unlike the parse."""
    return _fixed(values, DATETIME_WIDTH, what)
