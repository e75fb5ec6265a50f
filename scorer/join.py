"""The join of a day's visits and hits through ``ym:s:watchIDs``, streamed piece by piece.

Hits carry no visitID and the hits of one visit can sit in any hits part, so the join cannot run
part by part.  It runs in three passes, none holding more than a slice of the day:

1. each piece of visits is put aside, and each id it lists, with its position in the day's list of
   all listed ids, goes to one of 2**bits buckets by a hash of the id (``scatter`` then
   ``add_visits``);
2. each hit's (watchID, time) goes to the bucket of its id (``scatter`` then ``add_hits``);
3. ``batches`` joins bucket by bucket (a hash lookup small enough to stay in cache), sends each
   found (position, time) to the piece of visits that listed it, then hands back each piece with the
   time of every id it lists, in listing order.

What waits between passes goes to a ``Spill`` (memory up to a budget, then files).  ``scatter`` and
``join_bucket`` are pure and run on worker threads; ``Join`` itself is used from one thread.  A
watchID exported twice (e.g. overlapping parts) resolves to its first hit, in part order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from scorer import arrays, workers
from scorer.spill import Spill

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
MISSING = np.iinfo(np.int64).min  # the time of a listed id no hit has
HITS_PER_BUCKET = 1 << 16  # buckets this size joined fastest here: per-bucket overhead vs cache misses

_MIX = np.uint64(0xBF58476D1CE4E5B9)
_NOT_FOUND = arrays.scalar(-1, np.int32)


def bits_for(hits: int) -> int:
    """Bits of bucket number for a join of ``hits`` hits: about HITS_PER_BUCKET hits a bucket."""
    return max(0, min(16, (hits // HITS_PER_BUCKET).bit_length()))


@dataclass(frozen=True)
class Scattered:
    """Ids with one value each, grouped by bucket (in their order within a bucket)."""

    ids: U64
    values: I64
    bounds: I64  # bucket k holds [bounds[k], bounds[k + 1])


def scatter(ids: U64, values: I64, bits: int) -> Scattered:
    """Group ``ids`` (and ``values``) by the top ``bits`` of a mix of every bit of the id, so buckets
    fill evenly whatever the ids look like."""
    if bits == 0:
        return Scattered(ids, values, np.array([0, ids.size], dtype=np.int64))
    mixed = ids >> np.uint64(32)
    mixed ^= ids
    mixed *= _MIX
    mixed >>= np.uint64(64 - bits)
    bucket = mixed.astype(np.uint8 if bits <= 8 else np.uint16)
    order = np.argsort(bucket, kind="stable")  # a radix sort for small keys; keeps the order
    bounds = np.zeros((1 << bits) + 1, dtype=np.int64)
    np.cumsum(np.bincount(bucket, minlength=1 << bits), out=bounds[1:])
    return Scattered(ids[order], values[order], bounds)


def _first_rows(hit_ids: U64, wanted: U64) -> npt.NDArray[np.int32]:
    """For each wanted id, the row of its first hit, or -1: a hash lookup (Arrow's index_in, which
    gives the first of equal values; pandas' took 15 % less but would load pandas, see scorer.arrays)."""
    if hit_ids.size == 0:
        return np.full(wanted.size, -1, dtype=np.int32)
    rows = pc.index_in(arrays.from_numpy(wanted), value_set=arrays.from_numpy(hit_ids))
    found: npt.NDArray[np.int32] = arrays.to_numpy(pc.fill_null(rows, _NOT_FOUND))
    return found


def join_bucket(
    hit_ids: U64, hit_times: I64, listed_ids: U64, positions: I64, starts: I64
) -> list[tuple[int, I64, I64]]:
    """(piece, position within the piece, time) of the listed ids of one bucket that a hit has."""
    rows = _first_rows(hit_ids, listed_ids)
    found = np.flatnonzero(rows >= 0)
    positions, times = positions[found], hit_times[rows[found]]
    # A bucket holds its listed ids in the order the visits came: each piece's share is a slice.
    bounds = np.searchsorted(positions, starts)
    return [
        (i, positions[bounds[i] : bounds[i + 1]] - starts[i], times[bounds[i] : bounds[i + 1]])
        for i in np.flatnonzero(np.diff(bounds)).tolist()
    ]


class Join:
    def __init__(self, spill: Spill, bits: int) -> None:
        if not 0 <= bits <= 16:
            raise ValueError("bits must be 0..16")
        self._spill = spill
        self.bits = bits
        self._starts = [0]  # position of the first listed id of each piece of visits, then the total

    def add_visits(self, piece: pa.Table, listed: Scattered) -> None:
        """A piece of visits (kept as it is) and ``scatter`` of the ids it lists, each with its
        position in the piece's list (all rows' lists one after another)."""
        start = self._starts[-1]
        self._spill.put_table(f"visits{len(self._starts) - 1}", piece)
        self._starts.append(start + listed.ids.size)
        listed.values[:] += start
        self._add("listed", listed)

    def add_hits(self, hits: Scattered) -> None:
        """``scatter`` of the hits' watchIDs and times (seconds)."""
        self._add("hits", hits)

    def _add(self, side: str, scattered: Scattered) -> None:
        bounds = scattered.bounds
        for k in np.flatnonzero(np.diff(bounds)).tolist():
            lo, hi = bounds[k], bounds[k + 1]
            self._spill.append(f"{side}{k}", scattered.ids[lo:hi], scattered.values[lo:hi])

    def batches(self, executor: ThreadPoolExecutor) -> Iterator[tuple[pa.Table, I64]]:
        """Each piece of visits, in order, with the time of each id it lists (MISSING if no hit)."""
        starts = np.array(self._starts, dtype=np.int64)

        def buckets() -> Iterator[Callable[[], list[tuple[int, I64, I64]]]]:
            for k in range(1 << self.bits):
                hit_ids, hit_times = self._spill.take(f"hits{k}", (np.uint64, np.int64))
                listed_ids, positions = self._spill.take(f"listed{k}", (np.uint64, np.int64))
                if listed_ids.size:
                    yield functools.partial(join_bucket, hit_ids, hit_times, listed_ids, positions, starts)

        for found in workers.in_order(executor, buckets()):
            for i, at, times in found:
                self._spill.append(f"pairs{i}", at, times)
        for i in range(starts.size - 1):
            piece = self._spill.take_table(f"visits{i}")
            at, times = self._spill.take(f"pairs{i}", (np.int64, np.int64))
            listed_times = np.full(int(starts[i + 1] - starts[i]), MISSING, dtype=np.int64)
            listed_times[at] = times
            yield piece, listed_times
