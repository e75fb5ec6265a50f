from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from scorer import join, workers
from scorer.join import MISSING, Join, scatter
from scorer.spill import Spill


def test_first_rows_prefers_the_first_hit_of_an_id_exported_twice() -> None:
    rng = np.random.default_rng(3)
    hits = rng.integers(0, 2**64, 50_000, dtype=np.uint64, endpoint=False)
    hits[rng.integers(0, hits.size, 5000)] = hits[rng.integers(0, hits.size, 5000)]  # exported twice
    first: dict[int, int] = {}
    for row, value in enumerate(hits.tolist()):
        first.setdefault(value, row)
    queries = np.concatenate(
        [hits[rng.permutation(hits.size)], rng.integers(0, 2**64, 5000, dtype=np.uint64)]
    )
    assert join._first_rows(hits, queries).tolist() == [first.get(q, -1) for q in queries.tolist()]
    unique = np.unique(hits)
    assert join._first_rows(unique, unique[::-1]).tolist() == list(range(unique.size))[::-1]
    assert join._first_rows(np.zeros(0, dtype=np.uint64), queries[:3]).tolist() == [-1, -1, -1]


def test_scatter_groups_by_bucket_keeping_the_order() -> None:
    ids = np.array([2**64 - 1, 5, 2**63, 7, 2**64 - 1, 11], dtype=np.uint64)
    values = np.arange(ids.size, dtype=np.int64)
    for bits in (0, 1, 3, 9):
        out = scatter(ids, values, bits)
        assert sorted(out.values.tolist()) == values.tolist()
        for k in range(1 << bits):
            chunk = out.values[out.bounds[k] : out.bounds[k + 1]]
            assert chunk.tolist() == sorted(chunk.tolist())  # in order within a bucket
        # Equal ids share a bucket.
        where = {int(v): int(np.searchsorted(out.bounds, i, side="right")) for i, v in enumerate(out.values)}
        assert where[0] == where[4]


@pytest.mark.parametrize("budget", [1 << 40, 0, 300])
def test_hits_of_a_visit_in_any_piece_join_to_it(tmp_path: Path, budget: int) -> None:
    # Three pieces of visits listing ids 0..59 in turn; hits come in four pieces in another order.
    listed = [np.arange(lo, lo + 20, dtype=np.uint64) * np.uint64(2**58 + 1) for lo in (0, 20, 40)]
    hit_ids = np.concatenate(listed)[::-1].copy()
    hit_times = np.arange(hit_ids.size, dtype=np.int64) * 10
    with Spill(tmp_path, budget) as spill, workers.pool() as executor:
        joined = Join(spill, bits=3)
        for i, ids in enumerate(listed):
            piece = pa.table({"piece": [i]})
            joined.add_visits(piece, scatter(ids, np.arange(ids.size, dtype=np.int64), joined.bits))
        for chunk in np.array_split(np.arange(hit_ids.size), 4):
            joined.add_hits(scatter(hit_ids[chunk], hit_times[chunk], joined.bits))
        joined.add_hits(scatter(hit_ids[:5], hit_times[:5] + 1, joined.bits))  # exported again: ignored
        out = list(joined.batches(executor))
        spilled = spill.spilled
    assert [piece.column("piece").to_pylist() for piece, _ in out] == [[0], [1], [2]]
    time_of = dict(zip(hit_ids.tolist(), hit_times.tolist(), strict=True))
    for (_, times), ids in zip(out, listed, strict=True):
        assert times.tolist() == [time_of[i] for i in ids.tolist()]
    assert (spilled > 0) == (budget < 1 << 40)
    assert list(tmp_path.iterdir()) == []


def test_a_listed_id_without_a_hit_has_no_time() -> None:
    with Spill(None, 1 << 40) as spill, workers.pool() as executor:
        joined = Join(spill, bits=0)
        ids = np.array([1, 2, 3], dtype=np.uint64)
        joined.add_visits(pa.table({"x": [0]}), scatter(ids, np.arange(3, dtype=np.int64), 0))
        joined.add_hits(scatter(np.array([2], dtype=np.uint64), np.array([50], dtype=np.int64), 0))
        ((_, times),) = joined.batches(executor)
    assert times.tolist() == [MISSING, 50, MISSING]


def test_spill_gives_back_in_order_from_memory_and_files(tmp_path: Path) -> None:
    with Spill(tmp_path, budget=100) as spill:
        spill.append("a", np.arange(5, dtype=np.int64), np.arange(5, dtype=np.uint64))  # 80 bytes
        spill.put_table("t", pa.table({"x": [1, 2]}))
        assert spill.spilled == 0
        spill.append("a", np.arange(5, 10, dtype=np.int64), np.arange(5, 10, dtype=np.uint64))  # spills
        assert spill.spilled > 0 and len(list(tmp_path.iterdir())) == 1
        spill.append("a", np.arange(10, 12, dtype=np.int64), np.arange(10, 12, dtype=np.uint64))
        first, second = spill.take("a", (np.int64, np.uint64))
        assert first.tolist() == list(range(12)) and second.tolist() == list(range(12))
        assert second.dtype == np.uint64
        assert spill.take_table("t").column("x").to_pylist() == [1, 2]
        nothing, _ = spill.take("never", (np.int64, np.int64))
        assert nothing.size == 0 and nothing.dtype == np.int64
    assert list(tmp_path.iterdir()) == []


def test_spill_falls_back_to_the_temporary_directory_only_when_asked(tmp_path: Path) -> None:
    gone = tmp_path / "not-there"  # stands in for a read-only logs directory
    with Spill(gone, budget=0, fall_back=True) as spill:
        spill.append("a", np.arange(3, dtype=np.int64))
        assert spill.spilled > 0 and not gone.exists()
        assert spill.take("a", (np.int64,))[0].tolist() == [0, 1, 2]
    with Spill(gone, budget=0) as spill, pytest.raises(OSError):
        spill.append("a", np.arange(3, dtype=np.int64))
