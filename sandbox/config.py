"""Configuration of the Yandex Metrika API sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["SandboxConfig"]


@dataclass(frozen=True)
class SandboxConfig:
    """Knobs of the sandbox; defaults follow Yandex's documented limits.

    ``max_parallel`` and ``rps`` of 0 or less disable that quota.
    """

    tokens: frozenset[str] = frozenset({"sandbox-token"})
    max_parallel: int = 3
    rps: int = 10
    processing_seconds: float = 1.0
    rows_per_part: int = 200_000
    visits_per_day: int | None = None
    seed: int = 0
    storage_limit_bytes: int = 10 * 1024**3
    today: date | None = None
