"""The sandbox's notion of "now": real time, shifted by whole days when ``SandboxConfig.today`` is set."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

from sandbox.config import SandboxConfig

__all__ = ["MOSCOW", "moscow_date", "sandbox_now", "sandbox_today"]

#: Metrika counters default to Moscow time; "today" and conversion days are Moscow dates
MOSCOW = timezone(timedelta(hours=3))


def sandbox_today(config: SandboxConfig) -> date:
    return config.today or datetime.now(MOSCOW).date()


def sandbox_now(config: SandboxConfig) -> float:
    """Unix seconds; with ``config.today`` set, the current time of day on that (Moscow) date."""
    real = time.time()
    if config.today is None:
        return real
    shift = config.today - datetime.fromtimestamp(real, MOSCOW).date()
    return real + shift.total_seconds()


def moscow_date(timestamp: float) -> date:
    return datetime.fromtimestamp(timestamp, MOSCOW).date()
