"""The one scoring path shared by the scorer service and the CLI: Logs API -> TSV files -> level-4+ visits."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import shutil
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorer import scoring, tsv
from scorer.model import Models
from scorer.progress import Progress
from shared.settings import Settings

if TYPE_CHECKING:  # the Logs API client (and aiohttp) load only for a download: not for --logs-dir
    import aiohttp
    import pandas as pd

    from scorer.logs_api import Keeper, Ledger, LogsApiClient, PrepareHold
    from shared.db.slots import CounterSlots


@dataclass(frozen=True)
class Outcome:
    visits: pd.DataFrame  # level-4+ visits, the columns of scoring.score_visits
    total_visits: int


async def download_day(
    client: LogsApiClient,
    day: dt.date,
    dest: Path,
    progress: Progress,
    ledger: Ledger | None = None,
    hold: PrepareHold | None = None,
) -> None:
    """Pull visits and hits for `day` into `dest` (visits*.tsv, hits*.tsv), both sources side by side;
    with `hold`, both requests are kept when one is still being prepared as the hold ends."""

    async def one(source: str, fields: tuple[str, ...]) -> None:
        async def on_stage(stage: str, fraction: float) -> None:
            await progress.source_stage(source, stage, fraction)

        await client.download(day, source, list(fields), dest, on_stage=on_stage, ledger=ledger, hold=hold)

    await _all_or_none([one("visits", tsv.VISIT_FIELDS), one("hits", tsv.HIT_FIELDS)])


async def _all_or_none(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run side by side; the first failure cancels the others (each cleans its own log request) and is
    raised once they have all ended: nothing keeps running behind the caller's back."""
    running = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    for task in done:
        error = task.exception()
        if error is not None:
            raise error


async def score_files(
    logs_dir: Path, models: Models, executor: Executor | None, progress: Progress
) -> Outcome:
    """Read the TSV parts and score them off the event loop, reporting the features/scoring stages."""
    loop = asyncio.get_running_loop()

    def on_stage(stage: str) -> None:
        asyncio.run_coroutine_threadsafe(progress.stage(stage), loop)

    score = functools.partial(scoring.score_dir, logs_dir, models, on_stage=on_stage)
    frame, total = await loop.run_in_executor(executor, score)
    return Outcome(frame, total)


async def run(
    session: aiohttp.ClientSession,
    settings: Settings,
    token: str,
    counter: int,
    day: dt.date,
    models: Models,
    dest: Path,
    report: Callable[[int, str], Awaitable[None]],
    executor: Executor | None = None,
    ledger: Ledger | None = None,
    slots: CounterSlots | None = None,
    keeper: Keeper | None = None,
) -> Outcome:
    """Download a day into `dest` (emptied first: a crashed run may have left parts there), score it, and
    always remove `dest` afterwards. With `slots`, the Logs API calls hold the counter's shared slots;
    with `keeper`, a request still being prepared after LOGS_PREPARE_HOLD_S is kept for the next attempt
    and the run ends with a retryable MetrikaError of type PREPARING."""
    from scorer.logs_api import LogsApiClient, PrepareHold

    progress = Progress(report)
    client = LogsApiClient(session, settings, token, counter, slots=slots)
    hold = None
    if keeper is not None and settings.logs_prepare_hold_s > 0:
        hold = PrepareHold(keeper, asyncio.get_running_loop().time() + settings.logs_prepare_hold_s)
    await remove_dir(dest)
    dest.mkdir(parents=True)
    try:
        await download_day(client, day, dest, progress, ledger, hold)
        return await score_files(dest, models, executor, progress)
    finally:
        await asyncio.shield(remove_dir(dest))


async def remove_dir(path: Path) -> None:
    """`rm -rf path` off the event loop (a day's parts can be 100 MB in many files)."""
    await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
