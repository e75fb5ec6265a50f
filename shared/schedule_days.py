"""The days of a schedule, in its counter's time zone: which days are due to be scored or re-scored at a
given instant, and when the next run is due. Pure arithmetic, shared by the scheduler and the gateway.

Day D is due for scoring at D+1 `run_at` (counter-local), for its re-score at D+RESCORE_AFTER_DAYS `run_at`:
Metrika's sessions keep changing for about three days.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

# missed days are caught up this far back at most (the Logs API keeps about a year)
CATCH_UP_DAYS = 365
RESCORE_AFTER_DAYS = 3
# a re-score missed (scheduler down, schedule paused) is still made this many days after it was due
RESCORE_GRACE_DAYS = 7
DEFAULT_RUN_AT = dt.time(3, 0)


def local_today(now: dt.datetime, zone: ZoneInfo) -> dt.date:
    return now.astimezone(zone).date()


def yesterday(now: dt.datetime, zone: ZoneInfo) -> dt.date:
    """The counter-local yesterday at `now`: a new schedule's first day, and a resumed one's."""
    return local_today(now, zone) - dt.timedelta(days=1)


def due_at(day: dt.date, run_at: dt.time, zone: ZoneInfo, after_days: int = 1) -> dt.datetime:
    """When day `day`'s run is due: `after_days` later at `run_at`, counter-local, as a UTC instant (a time
    a clock change repeats is its first occurrence; one it skips, the instant its offset before gives)."""
    return dt.datetime.combine(day + dt.timedelta(days=after_days), run_at, tzinfo=zone).astimezone(dt.UTC)


def last_due_day(now: dt.datetime, run_at: dt.time, zone: ZoneInfo, after_days: int = 1) -> dt.date:
    """The latest day whose run (`after_days` later at `run_at`) is due at `now`."""
    local = now.astimezone(zone)
    day = local.date() - dt.timedelta(days=after_days)
    return day if due_at(day, run_at, zone, after_days) <= now else day - dt.timedelta(days=1)


def score_days(now: dt.datetime, run_at: dt.time, zone: ZoneInfo, first_day: dt.date) -> list[dt.date]:
    """Every day to be scored at `now`, oldest first: from `first_day` (at most CATCH_UP_DAYS back) to the
    latest day that is due."""
    last = last_due_day(now, run_at, zone)
    start = max(first_day, last - dt.timedelta(days=CATCH_UP_DAYS - 1))
    return [start + dt.timedelta(days=i) for i in range((last - start).days + 1)]


def rescore_window(now: dt.datetime, run_at: dt.time, zone: ZoneInfo) -> tuple[dt.date, dt.date]:
    """(first, last) day whose re-score is due at `now` and not yet past its grace."""
    last = last_due_day(now, run_at, zone, RESCORE_AFTER_DAYS)
    return last - dt.timedelta(days=RESCORE_GRACE_DAYS - 1), last


def next_run_at(
    now: dt.datetime,
    run_at: dt.time,
    zone: ZoneInfo,
    first_day: dt.date,
    last_scored: dt.date | None,
) -> dt.datetime:
    """When the next score run is due (in UTC): of the first day after `last_scored` (the latest day with a
    run) and not before `first_day`; a time already past means the run is being caught up."""
    day = first_day if last_scored is None else max(first_day, last_scored + dt.timedelta(days=1))
    day = max(day, last_due_day(now, run_at, zone) - dt.timedelta(days=CATCH_UP_DAYS - 1))
    return due_at(day, run_at, zone)
