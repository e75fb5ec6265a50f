"""Maps the pipeline's stages onto one 0..100 progress figure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

# stage -> (start, end) of its share of the bar; the Logs API part is shared by the two sources
STAGES: dict[str, tuple[int, int]] = {
    "evaluate": (0, 5),
    "prepare": (5, 35),
    "download": (35, 60),
    "features": (60, 80),
    "scoring": (80, 90),
    "store": (90, 99),
}
SOURCES = ("visits", "hits")

Report = Callable[[int, str], Awaitable[None]]


class Progress:
    """Turns `(source, stage, fraction)` reports into `(percent, message)`; never goes backwards."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._per_source = dict.fromkeys(SOURCES, 0.0)
        self._percent = 0
        self._last: tuple[int, str] | None = None

    async def source_stage(self, source: str, stage: str, fraction: float) -> None:
        start, end = STAGES[stage]
        self._per_source[source] = max(self._per_source[source], start + (end - start) * min(fraction, 1.0))
        # both sources must get through the Logs API, so the bar follows the slower one
        await self._emit(min(self._per_source.values()), f"{stage} ({source})")

    async def stage(self, stage: str) -> None:
        await self._emit(STAGES[stage][0], stage)

    async def _emit(self, value: float, message: str) -> None:
        percent = int(value)
        if percent < self._percent:
            percent = self._percent
        self._percent = percent
        if (percent, message) != self._last:  # a download reports every chunk: write only what changed
            self._last = (percent, message)
            await self._report(percent, message)
