from __future__ import annotations

import asyncio

from shared.logs import setup_logging
from shared.settings import Settings
from shared.signals import install_stop_handlers
from uploader.main import main


async def _run() -> None:
    stop = asyncio.Event()
    install_stop_handlers(stop)
    await main(Settings(), stop)


if __name__ == "__main__":
    setup_logging()
    asyncio.run(_run())
