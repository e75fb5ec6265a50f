"""Per-visit engagement features from Logs API visits and hits, fully vectorised.

Hits are joined to visits through ``ym:s:watchIDs`` (each element is a hit's ``ym:pv:watchID``), placed
on a 15-second slot grid from the visit start, and summarised per visit: how many hits and active
slots, how far they spread, how dense, and how regular the pauses between them are.

Text is turned into numbers by ``scorer.parsing`` (hits usually arrive already numeric from
``scorer.tsv``).  Work runs on numpy arrays in fixed-size chunks of visits on a few threads (numpy
releases the GIL): chunk-sized temporaries stay in cache, where whole-column ones would not.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from scorer import parsing
from scorer.parsing import FeatureError, parse_datetimes, parse_ids

__all__ = ["DESKTOP", "DEVICE_CLASSES", "FEATURES", "MOBILE", "SLOT_SECONDS", "FeatureError"]
__all__ += ["build_features", "build_matrix", "device_class"]

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

_VISITS_PER_CHUNK = 1 << 13  # visits joined and aggregated at a time
# Offsets are packed with the visit position into one int64 sort key; 2**31 s is ~68 years.
_OFFSET_BITS = 31
_OFFSET_MAX = (1 << _OFFSET_BITS) - 1
_EMPTY = np.uint64(2**64 - 1)  # hit-table slot holding no hit; its home is the last slot


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


def _mix(x: U64) -> U64:
    """splitmix64 finaliser: a bijection that spreads any id structure over all 64 bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: U64 = x ^ (x >> np.uint64(31))
    return out


class _HitIndex:
    """watchID -> hit row: an open-addressing table with linear probing, filled without a Python loop.

    Each hit is one uint64 key, the top bits of its mixed id (a bijection, so any id structure spreads
    evenly) above its row number.  Its home slot is the top bits of the key, over at least twice as many
    slots as hits.  Keys are sorted (numpy's SIMD sort), so key i lands in slot max(home_i, slot_{i-1} + 1),
    a running maximum, and the table keeps homes in order: a lookup walks forward from its home until
    it meets its key's top bits (then compares the full id), a later home, or an empty slot (whose
    _EMPTY key has the last home).  A watchID exported twice (e.g. overlapping parts) resolves to its
    first row: equal ids sort by row.  Built chunk by chunk: few whole-column temporaries.
    """

    def __init__(self, hit_ids: U64) -> None:
        n = hit_ids.size
        if n >= 1 << 31:
            raise FeatureError(f"{n} hits: more than this index holds")
        self._ids = hit_ids
        row_bits = (n + 1).bit_length()  # the _EMPTY key's row bits are no row
        self._row_mask = np.uint64((1 << row_bits) - 1)
        self._shift = np.uint64(63 - row_bits)  # home: the top row_bits + 1 bits, above the row bits
        keys = np.empty(n, dtype=np.uint64)

        def pack(lo: int, hi: int) -> None:
            keys[lo:hi] = (_mix(hit_ids[lo:hi]) & ~self._row_mask) | np.arange(lo, hi, dtype=np.uint64)

        parsing.for_chunks(n, parsing.ROWS_PER_CHUNK, pack)
        keys.sort()
        self._table = np.full((2 << row_bits) + 1, _EMPTY, dtype=np.uint64)
        carry = -1  # slot_i - i is a running maximum: carried from chunk to chunk
        for lo in range(0, n, parsing.ROWS_PER_CHUNK):
            chunk = keys[lo : lo + parsing.ROWS_PER_CHUNK]
            i = np.arange(lo, lo + chunk.size)
            slot = np.maximum(np.maximum.accumulate((chunk >> self._shift).astype(np.int64) - i), carry) + i
            if slot[-1] >= self._table.size - 1:  # keep the last slot empty: it ends every walk
                grown = np.full(int(slot[-1]) + 2, _EMPTY, dtype=np.uint64)
                grown[: self._table.size] = self._table
                self._table = grown
            self._table[slot] = chunk
            carry = int(slot[-1] - i[-1])
        self._last = self._table.size - 1

    def rows(self, ids: U64) -> I64:
        """Hit row of each id, -1 where no hit has that id."""
        found = np.full(ids.size, -1, dtype=np.int64)
        want = _mix(ids) & ~self._row_mask
        home = (want >> self._shift).astype(np.int64)
        todo = np.arange(ids.size)
        slot = home
        while todo.size:
            key = self._table[slot]
            row = (key & self._row_mask).astype(np.int64)
            same = np.flatnonzero((key & ~self._row_mask) == want)
            match = same[self._ids[row[same]] == ids[todo[same]]]  # the _EMPTY key never gets here
            found[todo[match]] = row[match]
            more = ((key >> self._shift).astype(np.int64) <= home) & (slot < self._last)
            more[match] = False
            todo, slot, want, home = todo[more], slot[more] + 1, want[more], home[more]
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
    """FEATURES as a (len(FEATURES), len(visits)) float64 array; visits without hits get zeros.

    Hits may hold ``ym:pv:watchID`` as uint64 and ``ym:pv:dateTime`` as datetime64 (as ``scorer.tsv``
    reads them) or both as text (as the Logs API writes them).
    """
    n = len(visits)
    out = np.zeros((len(FEATURES), n))
    hit_index = _HitIndex(parse_ids(hits["ym:pv:watchID"], "ym:pv:watchID"))
    hit_time = parse_datetimes(hits["ym:pv:dateTime"], "ym:pv:dateTime")
    start = parse_datetimes(visits["ym:s:dateTime"], "ym:s:dateTime")
    lists = visits["ym:s:watchIDs"].to_numpy(dtype=object)

    def work(lo: int, hi: int) -> None:
        listed, owner, per_row = parsing.parse_lists_chunk(lists[lo:hi].tolist(), "ym:s:watchIDs")
        out[_COL["watch_ids"], lo:hi] = per_row
        rows = hit_index.rows(listed)
        found = rows >= 0
        owner = owner[found]
        # Visit start is its first hit, so a negative offset is clock noise: count it as 0.
        offset = np.clip(hit_time[rows[found]] - start[lo:hi][owner], 0, _OFFSET_MAX)
        key = np.sort((owner << _OFFSET_BITS) | offset)
        _aggregate(key >> _OFFSET_BITS, key & _OFFSET_MAX, out[:, lo:hi])

    parsing.for_chunks(n, _VISITS_PER_CHUNK, work)
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
