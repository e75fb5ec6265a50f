"""A task's scored visits as COPY data for task_visits: built column-wise by pyarrow, written as CSV a
chunk at a time in the executor, so the event loop only passes bytes on (heartbeats and progress updates
keep running while a large day is stored)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor

import asyncpg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from scorer.progress import STAGES
from shared.db import tasks
from shared.db.tasks import VISIT_COLUMNS

ROWS_PER_CHUNK = 50_000  # about 5 MB of CSV: one progress step, and what the loop hands asyncpg at a time
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the Logs API's dateTime
_CSV = pa_csv.WriteOptions(include_header=False, quoting_style="needed", batch_size=ROWS_PER_CHUNK)

SCHEMA = pa.schema(
    [
        ("task_id", pa.string()),
        ("seq", pa.int32()),
        ("visit_id", pa.string()),
        ("client_id", pa.string()),
        ("date_time", pa.timestamp("s")),
        ("visit_duration", pa.int64()),
        ("score", pa.float64()),
        ("model_version", pa.string()),
        ("device_class", pa.string()),
    ]
)
assert tuple(SCHEMA.names) == VISIT_COLUMNS
OnChunk = Callable[[float], Awaitable[None]]
Report = Callable[[int, str], Awaitable[None]]


async def store(
    pool: asyncpg.Pool,
    task_id: uuid.UUID,
    frame: pd.DataFrame,
    *,
    executor: Executor | None,
    report: Report,
    total_visits: int,
    model_version: str,
    rows_per_chunk: int = ROWS_PER_CHUNK,
) -> bool:
    """Store the task's scored visits and complete it, in one transaction (tasks.store_result): the rows
    converted in `executor`, then written as CSV there chunk by chunk while COPY streams the chunk before,
    `report` hearing the store stage's progress after each chunk. True once stored, False if the task was
    finished elsewhere; a ValueError if the visits cannot be stored (nothing is)."""
    start, end = STAGES["store"]
    await report(start, "store")
    table = await asyncio.get_running_loop().run_in_executor(executor, visits_table, task_id, frame)

    async def on_chunk(fraction: float) -> None:
        await report(start + int((end - start) * fraction), "store")

    chunks = csv_chunks(table, executor, on_chunk, rows_per_chunk)
    async with pool.acquire() as conn:
        return await tasks.store_result(
            conn, task_id, chunks, table.num_rows, total_visits=total_visits, model_version=model_version
        )


def visits_table(task_id: uuid.UUID, frame: pd.DataFrame) -> pa.Table:
    """The scored visits (columns of scoring.OUTPUT_COLUMNS) as task_visits rows, in their order: columns
    VISIT_COLUMNS, `seq` numbering the rows from 0, `device_class` NULL when the frame has no deviceClass.
    Ids pass as the text they were read as (an integer id column as its exact decimal digits; a float one
    is refused: it may have lost digits). A ValueError names a column that cannot be stored."""
    n = len(frame)
    if n == 0:  # an empty frame's columns may have any dtype
        return SCHEMA.empty_table()
    table = pa.table(
        {
            "task_id": pa.repeat(str(task_id), n),
            "seq": pa.array(np.arange(n, dtype=np.int32)),
            "visit_id": _id_text(frame, "visitId"),
            "client_id": _id_text(frame, "clientId"),
            "date_time": _timestamps(frame, "dateTime"),
            "visit_duration": pa.array(np.asarray(frame["visitDuration"], dtype=np.int64)),
            "score": pa.array(np.asarray(frame["score"], dtype=np.float64)),
            "model_version": pa.array(frame["model_version"], type=pa.string()),
            "device_class": _device_classes(frame, n),
        }
    )
    assert table.column_names == SCHEMA.names
    for name in table.column_names[:-1]:  # the device class may be unknown (a frame without the column)
        if table[name].null_count:
            raise ValueError(f"result column {name!r} has {table[name].null_count} empty values")
    return table


def _device_classes(frame: pd.DataFrame, n: int) -> pa.Array:
    """The `deviceClass` column (scoring.OUTPUT_COLUMNS), or NULLs for a frame without it."""
    if "deviceClass" not in frame:
        return pa.nulls(n, pa.string())
    return pa.array(frame["deviceClass"], type=pa.string())


def _id_text(frame: pd.DataFrame, name: str) -> pa.Array | pa.ChunkedArray:
    column = pa.array(frame[name])
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    if pa.types.is_integer(column.type):
        return pc.cast(column, pa.string())
    raise ValueError(f"result column {name!r} is {column.type}: ids must be text or integers")


def _timestamps(frame: pd.DataFrame, name: str) -> pa.Array | pa.ChunkedArray:
    column = pa.array(frame[name])
    try:
        if pa.types.is_timestamp(column.type):
            return pc.cast(column, pa.timestamp("s"))
        return pc.strptime(column, format=DATETIME_FORMAT, unit="s")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"result column {name!r}: {exc}") from exc


def csv_bytes(table: pa.Table) -> bytes:
    """`table` as PostgreSQL's CSV COPY format reads it: no header, text quoted where needed, timestamps
    as `YYYY-MM-DD HH:MM:SS`, floats in their shortest exact form."""
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, _CSV)
    return bytes(sink.getvalue().to_pybytes())


async def csv_chunks(
    table: pa.Table,
    executor: Executor | None,
    on_chunk: OnChunk | None = None,
    rows_per_chunk: int = ROWS_PER_CHUNK,
) -> AsyncIterator[bytes]:
    """`table` as CSV, `rows_per_chunk` rows at a time, each chunk written in `executor` while the one
    before is being sent; `on_chunk` hears the fraction of rows handed over after each."""
    loop = asyncio.get_running_loop()
    n = table.num_rows
    bounds = [(lo, min(lo + rows_per_chunk, n)) for lo in range(0, n, rows_per_chunk)]

    def write(i: int) -> asyncio.Future[bytes] | None:
        if i >= len(bounds):
            return None
        lo, hi = bounds[i]
        return loop.run_in_executor(executor, csv_bytes, table.slice(lo, hi - lo))

    pending = write(0)
    try:
        for i, (_, hi) in enumerate(bounds):
            assert pending is not None
            data = await pending
            pending = write(i + 1)
            yield data
            if on_chunk is not None:
                await on_chunk(hi / n)
    finally:
        if pending is not None:
            pending.cancel()
