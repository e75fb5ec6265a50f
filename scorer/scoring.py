"""The one scoring path (scorer service and CLI alike): visits + hits -> level-4+ visits with scores.

``score_dir`` streams a day from its Logs API parts: the parts are cut into pieces of whole rows,
parsed (``scorer.tsv``), turned into numbers (``scorer.features.prepare_visits``) and sent to the
join's buckets on a few worker threads (``scorer.workers``), in order; the join (``scorer.join``)
then hands back each piece of visits with its hits' times, whose features are computed and scored
(``predict``: the compiled trees of ``scorer.forest``) on the same threads, keeping only the level-4+
rows.  ``score_visits`` does the same for in-memory frames.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from scorer import arrays, features, forest, join, parsing, tsv, workers
from scorer.features import DESKTOP, FEATURES, MOBILE
from scorer.join import Join, Scattered, scatter
from scorer.model import Models
from scorer.parsing import FeatureError
from scorer.spill import Spill

if TYPE_CHECKING:  # pandas for the service's and the frames' output only (see scorer.arrays)
    import pandas as pd

OUTPUT_COLUMNS: tuple[str, ...] = (
    "visitId",
    "clientId",
    "dateTime",
    "visitDuration",
    "score",
    "model_version",
    "deviceClass",  # the model that scored the visit: DESKTOP or MOBILE
)
_IS_MOBILE = FEATURES.index("is_mobile")
_ROWS_PER_CHUNK = 1 << 16  # visits scored at a time
SPILL_BUDGET = 1 << 28  # bytes a day keeps in memory between passes before it spills to files
_HIT_LINE_BYTES = 100  # a hits line, roughly: to size the join's buckets from the files' size
_VISIT_KINDS = tsv.kinds_of(tsv.VISIT_FIELDS, tsv.VISIT_KINDS)
_HIT_KINDS = tsv.kinds_of(tsv.HIT_FIELDS, tsv.HIT_KINDS)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
OnStage = Callable[[str], None]


def _noop(stage: str) -> None:
    pass


def predict(matrix: F64, models: Models) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Level-4+ probability of each visit (a column of the FEATURES x visits ``matrix``) and whether
    it clears the threshold of its device class."""
    mobile = matrix[_IS_MOBILE] == 1.0
    scores = np.zeros(matrix.shape[1], dtype=np.float64)
    has_nan = bool(np.isnan(matrix).any())  # never from batch_matrix; scikit-learn routes NaN per node
    for name, is_mobile in ((DESKTOP, False), (MOBILE, True)):
        compiled = models.by_class[name].forest
        columns = np.flatnonzero(mobile == is_mobile)
        for lo in range(0, columns.size, _ROWS_PER_CHUNK):
            chunk = columns[lo : lo + _ROWS_PER_CHUNK]
            x = np.take(matrix, chunk, axis=1)
            if compiled is None or has_nan:
                scores[chunk] = forest.predict_proba(models.estimator(name), x)
            else:
                scores[chunk] = compiled.proba(x)
    thresholds = np.where(mobile, models.threshold(MOBILE), models.threshold(DESKTOP))
    return scores, scores >= thresholds


class _Selected:
    """The level-4+ rows of each scored batch, put together in output order at the end."""

    def __init__(self) -> None:
        self._parts: list[tuple[pa.Table, F64, npt.NDArray[np.bool_]]] = []

    def add(
        self, prepared: pa.Table, scores: F64, selected: npt.NDArray[np.bool_], mobile: npt.NDArray[np.bool_]
    ) -> None:
        rows = np.flatnonzero(selected)
        columns = ["ym:s:visitID", "ym:s:clientID", "ym:s:dateTime", "start", "ym:s:visitDuration"]
        self._parts.append(
            (prepared.select(columns).take(arrays.from_numpy(rows)), scores[rows], mobile[rows])
        )

    def table(self, version: str) -> pa.Table:
        """OUTPUT_COLUMNS, ordered by dateTime then (numeric) visitId."""
        if self._parts:
            table = pa.concat_tables([t for t, _, _ in self._parts])
            scores = np.concatenate([s for _, s, _ in self._parts])
            mobile = np.concatenate([m for _, _, m in self._parts])
        else:
            table = pa.table(
                {
                    "ym:s:visitID": pa.array([], pa.binary()),
                    "ym:s:clientID": pa.array([], pa.binary()),
                    "ym:s:dateTime": pa.array([], pa.binary()),
                    "start": pa.array([], pa.int64()),
                    "ym:s:visitDuration": pa.array([], pa.int64()),
                }
            )
            scores = np.zeros(0)
            mobile = np.zeros(0, dtype=bool)
        self._parts.clear()
        visit_ids = parsing.uint64s(table.column("ym:s:visitID"), "ym:s:visitID")
        order = np.lexsort((visit_ids, arrays.to_numpy(table.column("start"))))
        del visit_ids
        columns = []
        for name in ("ym:s:visitID", "ym:s:clientID", "ym:s:dateTime", "ym:s:visitDuration"):
            column = table.column(name).take(arrays.from_numpy(order))  # a column at a time: one copy
            table = table.drop_columns([name])
            # Read as bytes: checked as UTF-8 here, on the rows output.
            columns.append(column if name == "ym:s:visitDuration" else tsv.as_text(column))
        columns += [
            arrays.from_numpy(scores[order]),
            pa.repeat(arrays.scalar(version), order.size),
            # the device class as text, without pyarrow's pandas-backed inference of numpy strings
            arrays.strings([DESKTOP, MOBILE]).take(arrays.from_numpy(mobile[order].astype(np.int8))),
        ]
        return pa.table(columns, names=list(OUTPUT_COLUMNS))


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A table of OUTPUT_COLUMNS as pandas (text as Arrow-backed str: no Python object per value)."""
    import pandas as pd

    return pd.DataFrame(
        {
            name: pd.Series(column.to_pandas(), dtype=str)
            if pa.types.is_string(column.type)
            else column.to_numpy()
            for name, column in zip(table.column_names, table.columns, strict=True)
        },
        columns=table.column_names,
    )


def score_visits(
    visits: pd.DataFrame, hits: pd.DataFrame, models: Models, on_stage: OnStage | None = None
) -> pd.DataFrame:
    """The level-4+ visits of in-memory frames, columns OUTPUT_COLUMNS, ordered by dateTime then
    (numeric) visitId: what score_dir gives for the same visits and hits written as TSV."""
    stage = on_stage or _noop
    stage("features")
    table, hit_ids, hit_times = features.frame_batches(visits, hits)
    with Spill(None, budget=1 << 62) as spill, workers.pool() as executor:
        joined = features.join_frames(spill, table, hit_ids, hit_times)
        stage("scoring")
        return to_frame(_score(joined, models, executor))


def _score(joined: Join, models: Models, executor: ThreadPoolExecutor) -> pa.Table:
    def scored(
        piece: pa.Table, listed_times: I64
    ) -> tuple[pa.Table, F64, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        matrix = features.batch_matrix(piece, listed_times)
        return (piece, *predict(matrix, models), matrix[_IS_MOBILE] == 1.0)

    selected = _Selected()
    calls = (functools.partial(scored, *batch) for batch in joined.batches(executor))
    for piece, scores, chosen, mobile in workers.in_order(executor, calls):
        selected.add(piece, scores, chosen, mobile)
    return selected.table(models.version)


def _visit_piece(piece: tsv.Piece, bits: int) -> tuple[pa.Table, Scattered]:
    table = tsv.parse(piece, _VISIT_KINDS)
    try:
        prepared, listed = features.prepare_visits(table)
    except FeatureError as exc:
        raise tsv.TsvError(f"{piece.path}: column {exc}") from exc
    return prepared, scatter(listed, np.arange(listed.size, dtype=np.int64), bits)


def _hit_piece(piece: tsv.Piece, bits: int) -> Scattered:
    table = tsv.parse(piece, _HIT_KINDS)
    times = arrays.to_numpy(table.column("ym:pv:dateTime"))
    return scatter(arrays.to_numpy(table.column("ym:pv:watchID")), times, bits)


def score_dir(
    logs_dir: Path | str,
    models: Models,
    on_stage: OnStage | None = None,
    work_dir: Path | str | None = None,
) -> tuple[pd.DataFrame, int]:
    """Read visits*.tsv and hits*.tsv from ``logs_dir`` and score them: (level-4+ visits, total visits).

    Streamed a piece of a part at a time (``scorer.join``), on a few threads: memory stays flat as the
    day grows.  What waits between passes beyond SPILL_BUDGET goes to a private directory inside
    ``work_dir`` (default: ``logs_dir``, or the system's temporary directory if that is read-only),
    removed afterwards.
    """
    table, total = score_table(logs_dir, models, on_stage, work_dir)
    return to_frame(table), total


def score_table(
    logs_dir: Path | str,
    models: Models,
    on_stage: OnStage | None = None,
    work_dir: Path | str | None = None,
) -> tuple[pa.Table, int]:
    """score_dir as an Arrow table (for the CLI, which writes it out as it is)."""
    visit_paths, hit_paths = tsv.find_parts(logs_dir)
    if not visit_paths:
        raise tsv.TsvError(f"{logs_dir}: no visits*.tsv files")
    if not hit_paths:
        raise tsv.TsvError(f"{logs_dir}: no hits*.tsv files")
    for path in visit_paths:  # every header before any row: a missing column fails at once
        tsv.check_columns(path, _VISIT_KINDS)
    for path in hit_paths:
        tsv.check_columns(path, _HIT_KINDS)
    stage = on_stage or _noop
    stage("features")
    hit_bytes = sum(p.stat().st_size for p in hit_paths)
    bits = join.bits_for(hit_bytes // _HIT_LINE_BYTES)
    total = 0
    with (
        Spill(work_dir or logs_dir, SPILL_BUDGET, fall_back=work_dir is None) as spill,
        workers.pool() as executor,
    ):
        joined = Join(spill, bits)
        # One stream of pieces, visits then hits: the workers never wait between the two.
        calls: Iterator[Callable[[], tuple[pa.Table, Scattered] | Scattered]] = itertools.chain(
            (
                functools.partial(_visit_piece, p, bits)
                for path in visit_paths
                for p in tsv.units(path, _VISIT_KINDS)
            ),
            (
                functools.partial(_hit_piece, p, bits)
                for path in hit_paths
                for p in tsv.units(path, _HIT_KINDS)
            ),
        )
        for result in workers.in_order(executor, calls):
            if isinstance(result, Scattered):
                joined.add_hits(result)
            else:
                joined.add_visits(*result)
                total += result[0].num_rows
        stage("scoring")
        return _score(joined, models, executor), total
