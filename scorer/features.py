"""Per-visit engagement features from Logs API visits and hits, fully vectorised.

Hits are joined to visits through ``ym:s:watchIDs`` (each element is a hit's ``ym:pv:watchID``, see
``scorer.join``), placed on a 15-second slot grid from the visit start, and summarised per visit: how
many hits and active slots, how far they spread, how dense, and how regular the pauses between them
are.  ``prepare_visits`` turns a batch of visits into numbers once (``scorer.parsing``);
``batch_matrix`` computes the features of such a batch from the times of the hits it lists.
``build_matrix`` / ``build_features`` do both for whole in-memory frames (training, tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from scorer import arrays, join, parsing, tsv, workers
from scorer.join import MISSING, Join, scatter
from scorer.parsing import FeatureError
from scorer.spill import Spill

if TYPE_CHECKING:  # pandas only for in-memory frames: scoring files never loads it (see scorer.arrays)
    import pandas as pd

__all__ = [
    "DESKTOP",
    "DEVICE_CLASSES",
    "FEATURES",
    "MOBILE",
    "SLOT_SECONDS",
    "FeatureError",
    "batch_matrix",
    "build_features",
    "build_matrix",
    "device_class",
    "prepare_visits",
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

# Offsets are packed with the visit position into one int64 sort key; 2**31 s is ~68 years.
_OFFSET_BITS = 31
_OFFSET_MAX = (1 << _OFFSET_BITS) - 1
_DEVICE_CODES = arrays.strings(["1", "2", "3", "4"])


def device_class(series: pd.Series) -> pd.Series:
    """'mobile' for deviceCategory 2 (phone) and 3 (tablet), else 'desktop' (1, 4 TV, unknown)."""
    import pandas as pd

    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    table = np.array([MOBILE if str(u) in _MOBILE_CODES else DESKTOP for u in uniques], dtype=object)
    return pd.Series(table[codes], index=series.index, dtype=str)


def _device_codes(column: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int8]:
    if pa.types.is_integer(column.type):
        column = pc.cast(column, pa.string())
    found = pc.index_in(column, value_set=_DEVICE_CODES.cast(column.type))
    found = pc.fill_null(found, arrays.scalar(-1, np.int32))
    codes: npt.NDArray[np.int8] = (arrays.to_numpy(found) + 1).astype(np.int8)
    return codes


def prepare_visits(batch: pa.Table) -> tuple[pa.Table, U64]:
    """A batch of visits (the tsv.VISIT_FIELDS columns) turned into numbers once, and the ids its rows
    list in ym:s:watchIDs, one row's after another.

    The prepared batch keeps what the output needs as it came (``ym:s:visitID``, ``ym:s:clientID``,
    ``ym:s:dateTime``) and what the features need: ``start`` (the dateTime in seconds),
    ``ym:s:visitDuration``, ``ym:s:pageViews``, ``ym:s:bounce``, ``device`` (1-4, 0 unknown) and
    ``watch_ids`` (how many ids the row lists).
    """
    listed, per_row = parsing.id_lists(batch.column("ym:s:watchIDs"), "ym:s:watchIDs")
    start = parsing.datetimes(batch.column("ym:s:dateTime"), "ym:s:dateTime")
    numbers = {}
    for name in ("ym:s:visitDuration", "ym:s:pageViews", "ym:s:bounce"):
        column = batch.column(name)
        if not pa.types.is_integer(column.type):
            raise FeatureError(f"{name}: expected integers, got {column.type}")
        numbers[name] = column
    prepared = {
        "ym:s:visitID": batch.column("ym:s:visitID"),
        "ym:s:clientID": batch.column("ym:s:clientID"),
        "ym:s:dateTime": batch.column("ym:s:dateTime"),
        "start": arrays.from_numpy(start),
        **numbers,
        "device": arrays.from_numpy(_device_codes(batch.column("ym:s:deviceCategory"))),
        "watch_ids": arrays.from_numpy(per_row.astype(np.int32)),
    }
    return pa.table(prepared), listed


def _numpy(table: pa.Table, name: str) -> npt.NDArray[Any]:
    values: npt.NDArray[Any] = arrays.to_numpy(table.column(name))
    return values


def batch_matrix(prepared: pa.Table, listed_times: I64) -> F64:
    """FEATURES (rows) of each visit (columns) of a prepared batch, from the time of the hit of each id
    the batch lists (MISSING where no hit has it).  Visits without hits get zeros."""
    m = prepared.num_rows
    out = np.zeros((len(FEATURES), m))
    per_row = _numpy(prepared, "watch_ids")
    out[_COL["watch_ids"]] = per_row
    found = np.flatnonzero(listed_times != MISSING)
    owner = np.repeat(np.arange(m, dtype=np.int64), per_row)[found]
    # Visit start is its first hit, so a negative offset is clock noise: count it as 0.
    offset = np.clip(listed_times[found] - _numpy(prepared, "start")[owner], 0, _OFFSET_MAX)
    key = (owner << _OFFSET_BITS) | offset
    if key.size > 1 and not bool(np.all(key[1:] >= key[:-1])):  # watchIDs are mostly in time order
        key.sort()
    _aggregate(key >> _OFFSET_BITS, key & _OFFSET_MAX, out)
    out[_COL["visit_duration"]] = _numpy(prepared, "ym:s:visitDuration")
    out[_COL["page_views"]] = _numpy(prepared, "ym:s:pageViews")
    out[_COL["bounce"]] = _numpy(prepared, "ym:s:bounce")
    codes = _numpy(prepared, "device")
    out[_COL["device_category"]] = codes
    out[_COL["is_mobile"]] = (codes == 2) | (codes == 3)
    return out


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


def frame_batches(visits: pd.DataFrame, hits: pd.DataFrame) -> tuple[pa.Table, U64, I64]:
    """Frames as the reader's tables: visits as an Arrow table of tsv.VISIT_FIELDS, hits' watchID as
    uint64 and dateTime as seconds (either may be text, as the Logs API writes them, or numeric)."""
    import pandas as pd

    table = pa.Table.from_pandas(visits[list(tsv.VISIT_FIELDS)], preserve_index=False)
    watch = hits["ym:pv:watchID"]
    if pd.api.types.is_integer_dtype(watch.dtype):
        if pd.api.types.is_signed_integer_dtype(watch.dtype) and bool((watch < 0).any()):
            raise FeatureError("ym:pv:watchID: negative id")
        hit_ids = watch.to_numpy(dtype=np.uint64)
    else:
        hit_ids = parsing.uint64s(watch, "ym:pv:watchID")
    when = hits["ym:pv:dateTime"]
    if pd.api.types.is_datetime64_dtype(when.dtype):
        if bool(when.isna().any()):
            raise FeatureError("ym:pv:dateTime: missing date-time")
        hit_times = when.to_numpy(dtype="datetime64[s]").view(np.int64)
    else:
        hit_times = parsing.datetimes(when, "ym:pv:dateTime")
    return table, hit_ids, hit_times


def build_matrix(visits: pd.DataFrame, hits: pd.DataFrame) -> F64:
    """FEATURES as a (len(FEATURES), len(visits)) float64 array; visits without hits get zeros."""
    table, hit_ids, hit_times = frame_batches(visits, hits)
    with Spill(None, budget=1 << 62) as spill, workers.pool() as executor:  # the frames are in memory
        joined = join_frames(spill, table, hit_ids, hit_times)
        ((piece, listed_times),) = joined.batches(executor)
        return batch_matrix(piece, listed_times)


def join_frames(spill: Spill, table: pa.Table, hit_ids: U64, hit_times: I64) -> Join:
    """A Join of one piece of visits (tsv.VISIT_FIELDS) and its hits."""
    joined = Join(spill, join.bits_for(hit_ids.size))
    prepared, listed = prepare_visits(table)
    joined.add_visits(prepared, scatter(listed, np.arange(listed.size, dtype=np.int64), joined.bits))
    joined.add_hits(scatter(hit_ids, hit_times, joined.bits))
    return joined


def build_features(visits: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """FEATURES for each visit (float64 columns, in FEATURES order), indexed like ``visits``."""
    import pandas as pd

    matrix = build_matrix(visits, hits)
    # The transpose of a C-ordered (features x visits) array is the block pandas keeps: no copy.
    return pd.DataFrame(matrix.T, index=visits.index, columns=list(FEATURES), copy=False)
