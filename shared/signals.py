"""Turn SIGINT/SIGTERM into a stop event; only process entrypoints call this."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from shared.logs import setup_logging
from shared.loop import new_event_loop
from shared.settings import Settings


def install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def run_service(main: Callable[[Settings, asyncio.Event], Awaitable[None]]) -> None:
    """The whole `python -m <consumer service>`: logging, settings from the environment, signals, run."""
    setup_logging()

    async def run() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        await main(Settings(), stop)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(run())
