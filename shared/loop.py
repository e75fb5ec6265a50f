"""The event loop a service process runs on: uvloop (a faster drop-in for asyncio's) where installed."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # not on every platform (Windows): asyncio's own loop does the same job
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
