"""The day arithmetic of schedules (shared/schedule_days.py): due days in the counter's own zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from shared import schedule_days as days

MOSCOW = ZoneInfo("Europe/Moscow")
NOVOSIBIRSK = ZoneInfo("Asia/Novosibirsk")
BERLIN = ZoneInfo("Europe/Berlin")
THREE = dt.time(3, 0)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_yesterday_is_the_counters_own():
    # 20:30 UTC: 23:30 on the 26th in Moscow, 03:30 on the 27th in Novosibirsk
    now = utc("2026-11-26T20:30:00")
    assert days.yesterday(now, MOSCOW) == dt.date(2026, 11, 25)
    assert days.yesterday(now, NOVOSIBIRSK) == dt.date(2026, 11, 26)
    first = dt.date(2026, 11, 25)
    assert days.score_days(now, THREE, MOSCOW, first) == [dt.date(2026, 11, 25)]
    assert days.score_days(now, THREE, NOVOSIBIRSK, first) == [dt.date(2026, 11, 25), dt.date(2026, 11, 26)]


def test_a_day_is_due_only_once_run_at_has_passed():
    first = dt.date(2026, 11, 20)
    # 02:59 and 03:00 in Moscow on the 26th
    assert days.score_days(utc("2026-11-25T23:59:00"), THREE, MOSCOW, first)[-1] == dt.date(2026, 11, 24)
    assert days.score_days(utc("2026-11-26T00:00:00"), THREE, MOSCOW, first)[-1] == dt.date(2026, 11, 25)
    assert days.score_days(utc("2026-11-25T23:59:00"), THREE, MOSCOW, dt.date(2026, 11, 25)) == []


def test_catch_up_is_bounded_to_a_year():
    now = utc("2026-11-26T12:00:00")
    due = days.score_days(now, THREE, MOSCOW, dt.date(2020, 1, 1))
    assert len(due) == days.CATCH_UP_DAYS
    assert due[-1] == dt.date(2026, 11, 25) and due == sorted(due)


def test_rescore_is_due_at_d_plus_3():
    # 03:00 on the 28th, Moscow: the 25th is due for its re-score, the 26th is not
    first, last = days.rescore_window(utc("2026-11-28T00:00:00"), THREE, MOSCOW)
    assert last == dt.date(2026, 11, 25)
    assert (last - first).days == days.RESCORE_GRACE_DAYS - 1
    assert days.rescore_window(utc("2026-11-27T23:59:59"), THREE, MOSCOW)[1] == dt.date(2026, 11, 24)


def test_next_run_at():
    now = utc("2026-11-26T12:00:00")  # 15:00 in Moscow
    # nothing scored yet, first day the 25th: due this morning (caught up at once)
    assert days.next_run_at(now, THREE, MOSCOW, dt.date(2026, 11, 25), None) == utc("2026-11-26T00:00:00")
    # the 25th scored: the 26th, due tomorrow 03:00 Moscow
    scored = dt.date(2026, 11, 25)
    assert days.next_run_at(now, THREE, MOSCOW, scored, scored) == utc("2026-11-27T00:00:00")
    assert days.next_run_at(now, dt.time(5, 30), MOSCOW, scored, scored) == utc("2026-11-27T02:30:00")
    assert days.next_run_at(now, THREE, NOVOSIBIRSK, scored, scored) == utc("2026-11-26T20:00:00")


def test_a_clock_change_day():
    # Berlin leaves summer time on 2026-10-25 (03:00 CEST -> 02:00 CET): 02:30 happens twice
    run_at = dt.time(2, 30)
    assert days.due_at(dt.date(2026, 10, 24), run_at, BERLIN) == utc("2026-10-25T00:30:00")
    assert days.score_days(utc("2026-10-25T00:29:00"), run_at, BERLIN, dt.date(2026, 10, 24)) == []
    assert days.score_days(utc("2026-10-25T00:30:00"), run_at, BERLIN, dt.date(2026, 10, 24)) == [
        dt.date(2026, 10, 24)
    ]
