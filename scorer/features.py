"""Per-visit engagement features from Logs API visits and hits, fully vectorised.

Hits are joined to visits through ``ym:s:watchIDs`` (each element is a hit's ``ym:pv:watchID``), placed
on a 15-second slot grid from the visit start, and summarised per visit: how many hits and active
slots, how far they spread, how dense, and how regular the pauses between them are.

Ids are parsed from their decimal text straight into uint64 (never via float or int64), dates from
their fixed-width text, both with integer arithmetic on the raw bytes.  Work runs on numpy arrays in
fixed-size chunks on a few threads (numpy releases the GIL): chunk-sized temporaries are recycled by
malloc, where whole-column temporaries would each pay for fresh pages, which measured slower.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pandas as pd

SLOT_SECONDS = 15

FEATURES: tuple[str, ...] = (
    "hits",  # hits joined to the visit
    "watch_ids",  # ids listed in ym:s:watchIDs (more than hits when hits are missing from the export)
    "active_slots",  # distinct 15-s slots holding at least one hit
    "slot_range",  # last slot - first slot + 1
    "slot_density",  # active_slots / slot_range
    "hits_per_slot",  # hits / active_slots
    "pause_mean",  # pauses: seconds between consecutive hits
    "pause_max",
    "pause_std",  # population standard deviation
    "pause_median",
    "visit_duration",
    "page_views",
    "bounce",
    "is_mobile",
    "device_category",  # 1 desktop, 2 phone, 3 tablet, 4 TV, 0 unknown
)
_COL = {name: i for i, name in enumerate(FEATURES)}

DESKTOP = "desktop"
MOBILE = "mobile"
DEVICE_CLASSES: tuple[str, ...] = (DESKTOP, MOBILE)
_MOBILE_CODES = frozenset({"2", "3"})  # phone, tablet

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

_ROWS_PER_CHUNK = 1 << 15  # text rows parsed at a time
_VISITS_PER_CHUNK = 1 << 14  # visits joined and aggregated at a time
# numpy releases the GIL in the heavy parts, so chunks run on a few threads.
_THREADS = max(1, min(4, os.cpu_count() or 1))
_QUERY_BITS = 24  # watchIDs looked up per batch: positions ride in the key's low bits
# Offsets are packed with the visit position into one int64 sort key; 2**31 s is ~68 years.
_OFFSET_BITS = 31
_OFFSET_MAX = (1 << _OFFSET_BITS) - 1

_MAX_DIGITS = 20  # 2**64 - 1 = 18446744073709551615
_PAD = b"\n" * _MAX_DIGITS  # lets every 20-byte window ending at a token stay inside the buffer
_DIGIT, _NL, _COMMA, _OPEN, _CLOSE = 48, 10, 44, 91, 93
_ASCII0_4 = np.uint32(0x30303030)
_ASCII0_8 = np.uint64(0x3030303030303030)
# Bytes of a little-endian window that belong to the token, by count of leading foreign bytes.
_KEEP4 = np.array([(0xFFFFFFFF << (8 * i)) & 0xFFFFFFFF for i in range(5)], dtype=np.uint32)
_KEEP8 = np.array([(0xFFFFFFFFFFFFFFFF << (8 * i)) & 0xFFFFFFFFFFFFFFFF for i in range(9)], dtype=np.uint64)
_E8 = np.uint64(10**8)


class FeatureError(ValueError):
    """Input that cannot be turned into features (malformed ids or dates)."""


def _for_chunks(n: int, size: int, work: Callable[[int, int], None]) -> None:
    """Run ``work(lo, hi)`` over [0, n) in chunks of ``size``; each call writes only its own slice."""
    bounds = [(lo, min(n, lo + size)) for lo in range(0, n, size)]
    if _THREADS == 1 or len(bounds) < 2:
        for lo, hi in bounds:
            work(lo, hi)
        return
    with ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="features") as pool:
        for future in [pool.submit(work, lo, hi) for lo, hi in bounds]:
            future.result()


def device_class(series: pd.Series) -> pd.Series:
    """'mobile' for deviceCategory 2 (phone) and 3 (tablet), else 'desktop' (1, 4 TV, unknown)."""
    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    table = np.array([MOBILE if str(u) in _MOBILE_CODES else DESKTOP for u in uniques], dtype=object)
    return pd.Series(table[codes], index=series.index, dtype=str)


def _device_codes(series: pd.Series) -> I64:
    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    table = np.array([int(str(u)) if str(u) in {"1", "2", "3", "4"} else 0 for u in uniques], dtype=np.int64)
    out: I64 = table[codes]
    return out


def _text_bytes(texts: Sequence[object], what: str) -> U8:
    """PAD + rows joined by '\\n' + '\\n', as bytes: one C-level pass over the rows."""
    try:
        raw = _PAD + "\n".join(texts).encode("ascii") + b"\n"  # type: ignore[arg-type]
    except (UnicodeEncodeError, TypeError) as exc:
        raise FeatureError(f"{what}: a value is missing or not a decimal id") from exc
    return np.frombuffer(raw, dtype=np.uint8)


def _digit_runs(buf: U8) -> tuple[I64, I64, npt.NDArray[np.bool_]]:
    """Start and (exclusive) end of every run of ASCII digits, and the digit mask."""
    digit = (buf - np.uint8(_DIGIT)) < 10
    # PAD in front and '\n' at the back: no run touches the buffer's ends.
    starts = np.flatnonzero(digit[1:] & ~digit[:-1]) + 1
    ends = np.flatnonzero(digit[:-1] & ~digit[1:]) + 1
    return starts, ends, digit


def _swar4(x: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Four ASCII digits (first digit in the low byte) -> their value, in a handful of integer ops."""
    x = x - _ASCII0_4
    x = (x * np.uint32(10) + (x >> np.uint32(8))) & np.uint32(0x00FF00FF)
    return (x * np.uint32(100) + (x >> np.uint32(16))) & np.uint32(0xFFFF)


def _swar8(x: U64) -> U64:
    """Eight ASCII digits (first digit in the low byte) -> their value."""
    x = x - _ASCII0_8
    x = (x * np.uint64(10) + (x >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    x = (x * np.uint64(100) + (x >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    return (x * np.uint64(10_000) + (x >> np.uint64(32))) & np.uint64(0xFFFFFFFF)


def _runs_to_uint64(buf: U8, starts: I64, ends: I64, what: str) -> U64:
    """Digit runs (all <= 20 digits) as exact uint64, from three little-endian windows per id.

    The id's last 20 bytes are read as 4 + 8 + 8 bytes; bytes in front of the id are replaced by
    ASCII '0' so short ids need no special case.
    """
    lengths = ends - starts
    longest = int(lengths.max()) if lengths.size else 0
    if longest > _MAX_DIGITS:
        raise FeatureError(f"{what}: id with {longest} digits does not fit UInt64")
    # Unaligned views at every byte offset: each window is a single gather.
    words4 = np.ndarray((buf.size - 3,), dtype="<u4", buffer=buf, strides=(1,))
    words8 = np.ndarray((buf.size - 7,), dtype="<u8", buffer=buf, strides=(1,))
    shortest = int(lengths.min()) if lengths.size else 0

    def window8(back: int) -> U64:
        # Masking the foreign leading bytes is only needed when some id is shorter than the window.
        raw: U64 = np.asarray(words8[ends - back], dtype=np.uint64)
        if shortest >= back:
            return raw
        keep = _KEEP8[np.clip(back - lengths, 0, 8)]
        masked: U64 = (raw & keep) | (_ASCII0_8 & ~keep)
        return masked

    value = _swar8(window8(8))
    if longest > 8:
        value += _swar8(window8(16)) * _E8
    if longest > 16:
        keep4 = _KEEP4[np.clip(20 - lengths, 0, 4)]
        top = _swar4((words4[ends - 20] & keep4) | (_ASCII0_4 & ~keep4)).astype(np.uint64)
        value += top * _E8 * _E8
    if longest == _MAX_DIGITS:
        # Past 2**64 a 20-digit id wraps below 10**19, or starts with 2..9.
        twenty = lengths == _MAX_DIGITS
        wrapped = twenty & ((buf[starts] > ord("1")) | (value < np.uint64(10**19)))
        if wrapped.any():
            raise FeatureError(f"{what}: id does not fit UInt64")
    return value


def _count(buf: U8, byte: int) -> int:
    return int(np.count_nonzero(buf == byte))


def _parse_ids_chunk(texts: Sequence[object], what: str) -> U64:
    buf = _text_bytes(texts, what)
    newlines = np.flatnonzero(buf == _NL)[len(_PAD) - 1 :]  # before the first row, then after each
    starts, ends = newlines[:-1] + 1, newlines[1:]
    digits = np.count_nonzero((buf - np.uint8(_DIGIT)) < 10)
    # Only digits between the newlines, and no empty row: each row is exactly one id.
    if (
        newlines.size != len(texts) + 1
        or digits + len(_PAD) + len(texts) != buf.size
        or np.any(ends == starts)
    ):
        raise FeatureError(f"{what}: expected exactly one decimal id per row")
    return _runs_to_uint64(buf, starts, ends, what)


def parse_ids(values: pd.Series, what: str = "id") -> U64:
    """One decimal UInt64 per row (e.g. ym:pv:watchID) as uint64, exact above 2**63."""
    if pd.api.types.is_integer_dtype(values.dtype):
        if pd.api.types.is_signed_integer_dtype(values.dtype) and bool((values < 0).any()):
            raise FeatureError(f"{what}: negative id")
        exact: U64 = values.to_numpy(dtype=np.uint64)
        return exact
    texts = values.to_numpy(dtype=object)
    out = np.empty(len(texts), dtype=np.uint64)

    def work(lo: int, hi: int) -> None:
        out[lo:hi] = _parse_ids_chunk(texts[lo:hi].tolist(), what)

    _for_chunks(len(texts), _ROWS_PER_CHUNK, work)
    return out


def _parse_lists_chunk(texts: Sequence[object], what: str) -> tuple[U64, I64]:
    buf = _text_bytes(texts, what)
    starts, ends, digit = _digit_runs(buf)
    newlines = np.flatnonzero(buf == _NL)
    n_open, n_close, n_comma = _count(buf, _OPEN), _count(buf, _CLOSE), _count(buf, _COMMA)
    row_ends = newlines[len(_PAD) - 1 :]  # the newline before the first row, then one after each row
    per_row = np.diff(np.searchsorted(starts, row_ends))
    # Every row is '[' + ids joined by single commas + ']', and nothing else.
    well_formed = (
        newlines.size == len(_PAD) + len(texts)
        and n_open == n_close == len(texts)
        and np.count_nonzero(digit) + newlines.size + n_open + n_close + n_comma == buf.size
        and n_comma == starts.size - np.count_nonzero(per_row)
        and bool(np.all(buf[row_ends[:-1] + 1] == _OPEN))
        and bool(np.all(buf[row_ends[1:] - 1] == _CLOSE))
        and bool(np.all((buf[starts - 1] == _OPEN) | (buf[starts - 1] == _COMMA)))
        and bool(np.all((buf[ends] == _CLOSE) | (buf[ends] == _COMMA)))
    )
    if not well_formed:
        raise FeatureError(f"{what}: expected arrays of decimal ids like [1,2,3]")
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), per_row)
    return _runs_to_uint64(buf, starts, ends, what), owner


def parse_id_lists(values: pd.Series, what: str = "ym:s:watchIDs") -> tuple[U64, I64]:
    """ClickHouse arrays '[1,2,3]' as (all ids, row position each id came from)."""
    texts = values.to_numpy(dtype=object)
    ids, owners = [], []
    for lo in range(0, len(texts), _ROWS_PER_CHUNK):
        chunk_ids, chunk_owner = _parse_lists_chunk(texts[lo : lo + _ROWS_PER_CHUNK].tolist(), what)
        ids.append(chunk_ids)
        owners.append(chunk_owner + lo)
    if not ids:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return np.concatenate(ids), np.concatenate(owners)


_DT_WIDTH = 20  # "YYYY-MM-DD HH:MM:SS" + "\n"
_DT_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord(" "), 13: ord(":"), 16: ord(":"), 19: _NL}
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _parse_datetimes_chunk(texts: Sequence[object], what: str) -> I64:
    n = len(texts)
    buf = _text_bytes(texts, what)[len(_PAD) :]
    if buf.size != n * _DT_WIDTH:
        return _parse_datetimes_slow(texts, what)

    def field(offset: int, dtype: str) -> npt.NDArray[np.unsignedinteger]:
        # The same field of every row: a strided view, no copy.
        return np.ndarray((n,), dtype=dtype, buffer=buf, offset=offset, strides=(_DT_WIDTH,))

    if not all(bool(np.all(field(pos, "u1") == ch)) for pos, ch in _DT_SEPARATORS.items()):
        return _parse_datetimes_slow(texts, what)
    year4 = field(0, "<u4") - _ASCII0_4
    pairs = [field(pos, "<u2") - np.uint16(0x3030) for pos in (5, 8, 11, 14, 17)]
    # A non-digit byte leaves some byte above 9 after the subtraction (borrows wrap high).
    if (year4.view(np.uint8) > 9).any() or any(
        bool(((p & 0xFF) > 9).any() | ((p >> 8) > 9).any()) for p in pairs
    ):
        raise FeatureError(f"{what}: malformed date-time")
    year = _swar4(year4 + _ASCII0_4).astype(np.int64)
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


def _parse_datetimes_slow(texts: Sequence[object], what: str) -> I64:
    try:
        stamps = pd.to_datetime(pd.Series(list(texts), dtype=object), format="%Y-%m-%d %H:%M:%S")
    except (ValueError, TypeError) as exc:
        raise FeatureError(f"{what}: {exc}") from exc
    out: I64 = stamps.to_numpy(dtype="datetime64[s]").astype(np.int64)
    return out


def parse_datetimes(values: pd.Series, what: str = "dateTime") -> I64:
    """'YYYY-MM-DD HH:MM:SS' (counter-local, naive) as seconds since 1970-01-01 on that same clock."""
    texts = values.to_numpy(dtype=object)
    out = np.empty(len(texts), dtype=np.int64)

    def work(lo: int, hi: int) -> None:
        out[lo:hi] = _parse_datetimes_chunk(texts[lo:hi].tolist(), what)

    _for_chunks(len(texts), _ROWS_PER_CHUNK, work)
    return out


def _mix(x: U64) -> U64:
    """splitmix64 finaliser: a bijection that spreads any id structure over all 64 bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: U64 = x ^ (x >> np.uint64(31))
    return out


class _HitIndex:
    """watchID -> hit row, from sorted packed keys and a directory over their top bits.

    Ids are first mixed (a bijection), so any id structure spreads evenly.  Each hit is one uint64
    key: the top bits of its mixed id above its row number; keys sort with numpy's SIMD sort, and the
    low bits of the mixed id are kept beside them for the exact comparison.  Queries are looked up in
    key order, so memory is walked forwards instead of at random (the slow part on large days).
    A watchID exported twice (e.g. overlapping parts) resolves to its first row.
    """

    def __init__(self, hit_ids: U64) -> None:
        n = hit_ids.size
        self._shift = np.uint64(max(n.bit_length(), _QUERY_BITS))
        self._low_mask = (np.uint64(1) << self._shift) - np.uint64(1)
        keys = np.empty(n, dtype=np.uint64)

        def pack(lo: int, hi: int) -> None:
            rows = np.arange(lo, hi, dtype=np.uint64)
            keys[lo:hi] = (_mix(hit_ids[lo:hi]) & ~self._low_mask) | rows

        _for_chunks(n, _ROWS_PER_CHUNK, pack)
        keys.sort()
        low = np.empty(n, dtype=np.uint32)

        def lows(lo: int, hi: int) -> None:
            rows = (keys[lo:hi] & self._low_mask).astype(np.int64)
            low[lo:hi] = _mix(hit_ids[rows]) & self._low_mask

        _for_chunks(n, _ROWS_PER_CHUNK, lows)
        self._keys = keys
        self._low = low
        # ~4 keys per directory bucket: a query starts right next to its key.
        dir_bits = max(1, n.bit_length() - 2)
        self._dir_shift = np.uint64(64 - dir_bits)
        directory = np.empty(1 << dir_bits, dtype=np.int64)

        def bucket_starts(lo: int, hi: int) -> None:
            bounds = np.arange(lo, hi, dtype=np.uint64) << self._dir_shift
            directory[lo:hi] = np.searchsorted(keys, bounds)

        _for_chunks(directory.size, _ROWS_PER_CHUNK, bucket_starts)
        self._directory = directory

    def rows(self, ids: U64) -> I64:
        """Hit row of each id, -1 where no hit has that id."""
        batch = 1 << _QUERY_BITS
        if ids.size <= batch:
            return self._rows(ids)
        return np.concatenate([self._rows(ids[lo : lo + batch]) for lo in range(0, ids.size, batch)])

    def _rows(self, ids: U64) -> I64:
        found = np.full(ids.size, -1, dtype=np.int64)
        if ids.size == 0 or self._keys.size == 0:
            return found
        mixed = _mix(ids)
        packed = np.sort((mixed & ~self._low_mask) | np.arange(ids.size, dtype=np.uint64))
        query = (packed & self._low_mask).astype(np.int64)
        want_top = packed & ~self._low_mask
        want_low = (mixed[query] & self._low_mask).astype(np.uint32)
        pos = self._directory[(want_top >> self._dir_shift).astype(np.int64)]
        # Walk forward over smaller keys, then over keys sharing the top bits, until the exact
        # mixed id turns up (ids are unique under a bijection) or the top bits run out.
        n_keys = self._keys.size
        todo = np.arange(ids.size)
        while todo.size:
            p = pos[todo]
            inside = p < n_keys
            todo, p = todo[inside], p[inside]
            key_top = self._keys[p] & ~self._low_mask
            below = key_top < want_top[todo]
            match = (key_top == want_top[todo]) & (self._low[p] == want_low[todo])
            found[query[todo[match]]] = (self._keys[p[match]] & self._low_mask).astype(np.int64)
            todo = todo[below | ((key_top == want_top[todo]) & ~match)]
            pos[todo] += 1
        return found


def _aggregate(group: I64, offset: I64, out: F64) -> None:
    """Fill the hit/slot/pause columns of ``out`` (features x visits) from hits sorted by (visit, offset)."""
    m = out.shape[1]
    counts = np.bincount(group, minlength=m)
    out[_COL["hits"]] = counts
    if group.size == 0:
        return
    has = counts > 0
    firsts = np.cumsum(counts) - counts
    slot = offset // SLOT_SECONDS
    new_group = np.ones(group.size, dtype=bool)
    new_group[1:] = group[1:] != group[:-1]
    new_slot = new_group.copy()
    new_slot[1:] |= slot[1:] != slot[:-1]
    active = np.bincount(group, weights=new_slot, minlength=m)
    slot_range = np.zeros(m)
    slot_range[has] = slot[firsts[has] + counts[has] - 1] - slot[firsts[has]] + 1
    out[_COL["active_slots"]] = active
    out[_COL["slot_range"]] = slot_range
    out[_COL["slot_density"], has] = active[has] / slot_range[has]
    out[_COL["hits_per_slot"], has] = counts[has] / active[has]

    same = ~new_group[1:]
    gaps = (offset[1:] - offset[:-1])[same]
    if gaps.size == 0:
        return
    gap_group = group[1:][same]
    n_gaps = np.bincount(gap_group, minlength=m)
    has_gaps = n_gaps > 0
    k = n_gaps[has_gaps]
    mean = np.zeros(m)
    mean[has_gaps] = np.bincount(gap_group, weights=gaps, minlength=m)[has_gaps] / k
    dev = gaps - mean[gap_group]
    var = np.bincount(gap_group, weights=dev * dev, minlength=m)
    out[_COL["pause_mean"]] = mean
    out[_COL["pause_std"], has_gaps] = np.sqrt(var[has_gaps] / k)
    # Sorting (visit, gap) keys puts each visit's gaps in order: max and median by position.
    ordered = np.sort((gap_group << _OFFSET_BITS) | gaps) & _OFFSET_MAX
    lo = (np.cumsum(n_gaps) - n_gaps)[has_gaps]
    out[_COL["pause_max"], has_gaps] = ordered[lo + k - 1]
    out[_COL["pause_median"], has_gaps] = (ordered[lo + (k - 1) // 2] + ordered[lo + k // 2]) / 2


def build_matrix(visits: pd.DataFrame, hits: pd.DataFrame) -> F64:
    """FEATURES as a (len(FEATURES), len(visits)) float64 array; visits without hits get zeros."""
    n = len(visits)
    out = np.zeros((len(FEATURES), n))
    hit_index = _HitIndex(parse_ids(hits["ym:pv:watchID"], "ym:pv:watchID"))
    hit_time = parse_datetimes(hits["ym:pv:dateTime"], "ym:pv:dateTime")
    start = parse_datetimes(visits["ym:s:dateTime"], "ym:s:dateTime")
    lists = visits["ym:s:watchIDs"].to_numpy(dtype=object)

    def work(lo: int, hi: int) -> None:
        listed, owner = _parse_lists_chunk(lists[lo:hi].tolist(), "ym:s:watchIDs")
        out[_COL["watch_ids"], lo:hi] = np.bincount(owner, minlength=hi - lo)
        rows = hit_index.rows(listed)
        found = rows >= 0
        owner = owner[found]
        # Visit start is its first hit, so a negative offset is clock noise: count it as 0.
        offset = np.clip(hit_time[rows[found]] - start[lo:hi][owner], 0, _OFFSET_MAX)
        key = np.sort((owner << _OFFSET_BITS) | offset)
        _aggregate(key >> _OFFSET_BITS, key & _OFFSET_MAX, out[:, lo:hi])

    _for_chunks(n, _VISITS_PER_CHUNK, work)
    out[_COL["visit_duration"]] = visits["ym:s:visitDuration"].to_numpy(dtype=np.float64)
    out[_COL["page_views"]] = visits["ym:s:pageViews"].to_numpy(dtype=np.float64)
    out[_COL["bounce"]] = visits["ym:s:bounce"].to_numpy(dtype=np.float64)
    codes = _device_codes(visits["ym:s:deviceCategory"])
    out[_COL["device_category"]] = codes
    out[_COL["is_mobile"]] = (codes == 2) | (codes == 3)
    return out


def build_features(visits: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """FEATURES for each visit (float64 columns, in FEATURES order), indexed like ``visits``."""
    matrix = build_matrix(visits, hits)
    # The transpose of a C-ordered (features x visits) array is the block pandas keeps: no copy.
    return pd.DataFrame(matrix.T, index=visits.index, columns=list(FEATURES), copy=False)
