"""Per-visit engagement features from Logs API visits and hits, fully vectorised.

Hits are joined to visits through ``ym:s:watchIDs`` (each element is a hit's ``ym:pv:watchID``), placed
on a 15-second slot grid from the visit start, and summarised per visit: how many hits and active
slots, how far they spread, how dense, and how regular the pauses between them are.

Text is turned into numbers by ``scorer.parsing`` (hits usually arrive already numeric from
``scorer.tsv``).  Work runs on numpy arrays in fixed-size chunks of visits on a few threads (numpy
releases the GIL): chunk-sized temporaries stay in cache, where whole-column ones would not.
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
import pandas as pd

from scorer import parsing
from scorer.parsing import FeatureError, parse_datetimes, parse_ids

__all__ = [  # FeatureError lives in scorer.parsing since the text parsing moved there
    "DESKTOP",
    "DEVICE_CLASSES",
    "FEATURES",
    "MOBILE",
    "SLOT_SECONDS",
    "FeatureError",
    "build_features",
    "build_matrix",
    "device_class",
]

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

_VISITS_PER_CHUNK = 1 << 14  # visits joined and aggregated at a time
# Offsets are packed with the visit position into one int64 sort key; 2**31 s is ~68 years.
_OFFSET_BITS = 31
_OFFSET_MAX = (1 << _OFFSET_BITS) - 1
_EMPTY = np.uint64(2**64 - 1)  # a key after every hit's


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


def _spread(x: U64) -> U64:
    """A bijection whose top bits depend on every bit of ``x``: fold the high half onto the low one,
    then one odd multiply carries every low bit up (the first splitmix64 round, with a 32-bit shift)."""
    out: U64 = x >> np.uint64(32)
    out ^= x
    out *= np.uint64(0xBF58476D1CE4E5B9)
    return out


class _HitIndex:
    """watchID -> hit row, from sorted packed keys and a directory over their top bits.

    Each hit is one uint64 key below 2**63: the top bits of its spread id (a bijection, so any id
    structure spreads evenly) above its row number.  Keys are sorted (numpy's SIMD sort) and a
    directory gives where each bucket of top bits starts, about one key a bucket.  A lookup walks on
    from the start of its bucket until it meets its key's top bits (then compares the full id) or a
    larger key; an _EMPTY key after the last ends every walk.  A watchID exported twice (e.g.
    overlapping parts) resolves to its first row: equal ids sort by row.  Only the keys (8 bytes a
    hit) and the directory (4 bytes a bucket) are allocated: fresh memory is slow to touch.
    """

    def __init__(self, hit_ids: U64) -> None:
        n = hit_ids.size
        self._ids = hit_ids
        bits = max(1, n.bit_length())  # for a key's row, below its top bits; and for the bucket
        if bits > 31:
            raise FeatureError(f"{n} hits: more than this index holds")
        self._low = np.uint64((1 << bits) - 1)
        bucket_bits = bits  # about one key a bucket
        self._shift = np.uint64(63 - bucket_bits)
        self._keys = keys = np.empty(n + 1, dtype=np.uint64)
        keys[n] = _EMPTY

        def pack(lo: int, hi: int) -> None:
            keys[lo:hi] = self._top(hit_ids[lo:hi]) | np.arange(lo, hi, dtype=np.uint64)

        parsing.for_chunks(n, parsing.ROWS_PER_CHUNK, pack)
        keys[:n].sort()
        # starts[b]: the first key in bucket b or later.  Filled chunk by chunk (no key-sized
        # temporaries): each key starts the buckets after the previous key's, up to its own.
        self._starts = starts = np.empty(1 << bucket_bits, dtype=np.int32)
        done = 0  # buckets whose start is known
        for lo in range(0, n, parsing.ROWS_PER_CHUNK):
            bucket = (keys[lo : min(n, lo + parsing.ROWS_PER_CHUNK)] >> self._shift).astype(np.int64)
            upto = int(bucket[-1]) + 1
            spans = np.diff(bucket, prepend=done - 1)
            starts[done:upto] = np.repeat(np.arange(lo, lo + bucket.size, dtype=np.int32), spans)
            done = upto
        starts[done:] = n

    def _top(self, ids: U64) -> U64:
        top = _spread(ids)
        top >>= np.uint64(1)
        top &= ~self._low
        return top

    def rows(self, ids: U64) -> I64:
        """Hit row of each id, -1 where no hit has that id."""
        found = np.full(ids.size, -1, dtype=np.int64)
        top = self._top(ids)
        pos = self._starts[top >> self._shift]
        todo: I64 | None = None  # which ids are still walking (None: all of them)
        while pos.size:
            key = self._keys[pos]
            same = np.flatnonzero((key ^ top) <= self._low)
            row = (key[same] & self._low).astype(np.intp)
            which = same if todo is None else todo[same]
            hit = self._ids[row] == ids[which]
            found[which[hit]] = row[hit]
            key[same[hit]] = _EMPTY  # found: stop walking
            more = np.flatnonzero(key <= (top | self._low))
            todo, pos, top = more if todo is None else todo[more], pos[more] + 1, top[more]
        return found


def _aggregate(group: I64, offset: I64, out: F64) -> None:
    """Fill the hit/slot/pause columns of ``out`` (features x visits) from hits sorted by (visit, offset).

    Sums of whole seconds are exact in float64, so they are taken in any order; the squared
    deviations are summed by ``np.bincount``, in hit order.
    """
    m = out.shape[1]
    counts = np.bincount(group, minlength=m)
    out[_COL["hits"]] = counts
    if group.size == 0:
        return
    has = np.flatnonzero(counts)
    last = (np.cumsum(counts) - 1)[has]
    first = last - counts[has] + 1
    slot = offset // SLOT_SECONDS
    new_group = np.ones(group.size, dtype=bool)
    np.not_equal(group[1:], group[:-1], out=new_group[1:])
    new_slot = new_group.copy()
    new_slot[1:] |= slot[1:] != slot[:-1]
    slot_starts = np.cumsum(new_slot)
    active = (slot_starts[last] - slot_starts[first] + 1).astype(np.float64)
    slot_range = (slot[last] - slot[first] + 1).astype(np.float64)
    out[_COL["active_slots"], has] = active
    out[_COL["slot_range"], has] = slot_range
    out[_COL["slot_density"], has] = active / slot_range
    out[_COL["hits_per_slot"], has] = counts[has] / active

    several = counts[has] > 1
    if not several.any():
        return
    with_gaps = has[several]
    k = counts[with_gaps] - 1
    mean = np.zeros(m)
    mean[with_gaps] = (offset[last[several]] - offset[first[several]]) / k
    same = ~new_group[1:]
    gaps = (offset[1:] - offset[:-1])[same]
    gap_group = group[1:][same]
    dev = gaps - mean[gap_group]
    var = np.bincount(gap_group, weights=dev * dev, minlength=m)
    out[_COL["pause_mean"]] = mean
    out[_COL["pause_std"], with_gaps] = np.sqrt(var[with_gaps] / k)
    # Sorting (visit, gap) keys puts each visit's gaps in order: max and median by position.
    ordered = np.sort((gap_group << _OFFSET_BITS) | gaps) & _OFFSET_MAX
    # A visit's first gap sits where its first hit does, less one for each visit before it.
    lo = (first - np.arange(has.size))[several]
    out[_COL["pause_max"], with_gaps] = ordered[lo + k - 1]
    out[_COL["pause_median"], with_gaps] = (ordered[lo + (k - 1) // 2] + ordered[lo + k // 2]) / 2


def build_matrix(visits: pd.DataFrame, hits: pd.DataFrame) -> F64:
    """FEATURES as a (len(FEATURES), len(visits)) float64 array; visits without hits get zeros.

    Hits may hold ``ym:pv:watchID`` as uint64 and ``ym:pv:dateTime`` as datetime64 (as ``scorer.tsv``
    reads them) or both as text (as the Logs API writes them).  One worker indexes the hits while this
    thread does the work that holds the GIL (Python strings to bytes, column by column and chunk by
    chunk), handing each chunk of visits to the workers as soon as its bytes are ready; a worker parses
    it and, once the index is there, joins and summarises it.  The workers' numpy code releases the GIL,
    so the two kinds of work overlap instead of queueing for it.
    """
    n = len(visits)
    out = np.zeros((len(FEATURES), n))
    lists = visits["ym:s:watchIDs"].to_numpy(dtype=object)
    indexed = threading.Event()
    waiting: list[tuple[int, int, U64, I64, I64]] = []

    def index() -> tuple[_HitIndex, I64]:
        hit_time = parse_datetimes(hits["ym:pv:dateTime"], "ym:pv:dateTime")
        hit_index = _HitIndex(parse_ids(hits["ym:pv:watchID"], "ym:pv:watchID"))
        indexed.set()
        return hit_index, hit_time

    def join(lo: int, hi: int, listed: U64, owner: I64, start: I64) -> None:
        hit_index, hit_time = indexing.result()
        rows = hit_index.rows(listed)
        found = rows >= 0
        owner = owner[found]
        # Visit start is its first hit, so a negative offset is clock noise: count it as 0.
        offset = np.clip(hit_time[rows[found]] - start[owner], 0, _OFFSET_MAX)
        key = (owner << _OFFSET_BITS) | offset
        if key.size > 1 and not bool(np.all(key[1:] >= key[:-1])):  # watchIDs are mostly in time order
            key.sort()
        _aggregate(key >> _OFFSET_BITS, key & _OFFSET_MAX, out[:, lo:hi])

    def chunk(lo: int, hi: int, text: npt.NDArray[np.uint8], starts: npt.NDArray[np.bytes_]) -> None:
        listed, owner, per_row = parsing.parse_lists_bytes(text, hi - lo, "ym:s:watchIDs")
        start = parsing.parse_fixed_datetimes(starts[lo:hi], "ym:s:dateTime")
        out[_COL["watch_ids"], lo:hi] = per_row
        if indexed.is_set():
            join(lo, hi, listed, owner, start)
        else:
            waiting.append((lo, hi, listed, owner, start))

    with parsing.workers() as pool:
        indexing = pool.submit(index)
        starts = parsing.datetime_bytes(visits["ym:s:dateTime"], "ym:s:dateTime")
        chunks = []
        for lo in range(0, n, _VISITS_PER_CHUNK):
            hi = min(n, lo + _VISITS_PER_CHUNK)
            text = parsing.lists_bytes(lists[lo:hi].tolist(), "ym:s:watchIDs")
            chunks.append(pool.submit(chunk, lo, hi, text, starts))
        out[_COL["visit_duration"]] = visits["ym:s:visitDuration"].to_numpy(dtype=np.float64)
        out[_COL["page_views"]] = visits["ym:s:pageViews"].to_numpy(dtype=np.float64)
        out[_COL["bounce"]] = visits["ym:s:bounce"].to_numpy(dtype=np.float64)
        codes = _device_codes(visits["ym:s:deviceCategory"])
        out[_COL["device_category"]] = codes
        out[_COL["is_mobile"]] = (codes == 2) | (codes == 3)
        for future in chunks:
            future.result()
        for future in [pool.submit(join, *parsed) for parsed in waiting]:
            future.result()
        indexing.result()
    return out


def build_features(visits: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """FEATURES for each visit (float64 columns, in FEATURES order), indexed like ``visits``."""
    matrix = build_matrix(visits, hits)
    # The transpose of a C-ordered (features x visits) array is the block pandas keeps: no copy.
    return pd.DataFrame(matrix.T, index=visits.index, columns=list(FEATURES), copy=False)
