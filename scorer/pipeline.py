"""The one scoring path shared by the scorer service and the CLI: Logs API -> TSV files -> level-4+ visits."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pandas as pd

from scorer import scoring, tsv
from scorer.logs_api import LogsApiClient
from scorer.model import Models
from scorer.progress import Progress


@dataclass(frozen=True)
class LogsApiSettings:
    base_url: str
    poll_initial_s: float = 2.0
    poll_max_s: float = 60.0
    poll_timeout_s: float = 6 * 3600.0
    retry_attempts: int = 6
    retry_max_s: float = 60.0


@dataclass(frozen=True)
class Outcome:
    visits: pd.DataFrame  # level-4+ visits, the columns of scoring.score_visits
    total_visits: int


async def download_day(
    session: aiohttp.ClientSession,
    api: LogsApiSettings,
    token: str,
    counter: int,
    day: dt.date,
    dest: Path,
    progress: Progress,
) -> None:
    """Pull visits and hits for `day` into `dest` (visits*.tsv, hits*.tsv), both sources side by side."""
    client = LogsApiClient(
        session,
        token,
        counter,
        base_url=api.base_url,
        max_attempts=api.retry_attempts,
        backoff_initial=min(1.0, api.retry_max_s),
        backoff_max=api.retry_max_s,
        poll_initial=api.poll_initial_s,
        poll_max=api.poll_max_s,
        prepare_timeout=api.poll_timeout_s,
    )

    async def one(source: str, fields: tuple[str, ...]) -> None:
        async def on_stage(stage: str, fraction: float) -> None:
            await progress.source_stage(source, stage, fraction)

        await client.download(day, source, list(fields), dest, on_stage=on_stage)

    await asyncio.gather(one("visits", tsv.VISIT_FIELDS), one("hits", tsv.HIT_FIELDS))


async def score_files(
    logs_dir: Path, models: Models, executor: Executor | None, progress: Progress
) -> Outcome:
    """Read the TSV parts and score them off the event loop, reporting the features/scoring stages."""
    loop = asyncio.get_running_loop()

    def on_stage(stage: str) -> None:
        asyncio.run_coroutine_threadsafe(progress.stage(stage), loop)

    frame, total = await loop.run_in_executor(executor, _score_dir, logs_dir, models, on_stage)
    return Outcome(frame, total)


def _score_dir(logs_dir: Path, models: Models, on_stage: Callable[[str], None]) -> tuple[pd.DataFrame, int]:
    return scoring.score_dir(logs_dir, models, on_stage=on_stage)


async def run(
    session: aiohttp.ClientSession,
    api: LogsApiSettings,
    token: str,
    counter: int,
    day: dt.date,
    models: Models,
    work_dir: Path,
    report: Callable[[int, str], Awaitable[None]],
    executor: Executor | None = None,
) -> Outcome:
    """Download a day into a private temp dir under `work_dir`, score it, and always remove the files."""
    progress = Progress(report)
    work_dir.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=f"{counter}-{day}-", dir=work_dir))
    try:
        await download_day(session, api, token, counter, day, dest, progress)
        return await score_files(dest, models, executor, progress)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
