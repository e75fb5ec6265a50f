"""Schedule endpoints: create, list, read, change, pause, resume, delete, and a schedule's runs.

The runs themselves are made by the scheduler service (scheduler/); here a schedule is only stored. Its
token is kept encrypted and never shown again.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web

from gateway import keys, pages, timestamps
from gateway.bodies import parse_body, parse_query
from gateway.conversions import upload_status_word
from shared import errors, schedule_days
from shared.db import schedules
from shared.schemas import ScheduleCreate, ScheduleUpdate

# runs shown with GET /schedules/{id} (all of them: GET /schedules/{id}/runs)
RECENT_RUNS = 10


async def create_schedule(request: web.Request) -> web.Response:
    """201 with the schedule; 409 naming the schedule its counter has already."""
    body = await parse_body(request, ScheduleCreate)
    pool = request.app[keys.PG_POOL]
    zone = await counter_zone(request, body.counter, body.token)
    schedule_id = uuid.uuid4()
    new = schedules.NewSchedule(
        schedule_id,
        body.counter,
        request.app[keys.CIPHER].encrypt(body.token),
        _run_at(body.time),
        body.upload.target if body.upload else None,
        schedule_days.yesterday(_now(), zone),
        body.callback_url,
    )
    if await schedules.insert(pool, new) is None:
        existing = await schedules.of_counter(pool, body.counter)
        raise errors.Conflict(
            f"Counter {body.counter} has a schedule already: {existing} (change it with PATCH)",
            extra={"schedule_id": str(existing)},
        )
    row = await schedules.get(pool, schedule_id)
    if row is None:  # deleted in between
        raise errors.NotFound("Schedule not found")
    return web.json_response(await _schedule(request, row), status=201)


async def list_schedules(request: web.Request) -> web.Response:
    """GET /schedules: newest first."""
    query = parse_query(request, pages.PageQuery)
    total, rows = await schedules.page(request.app[keys.PG_POOL], query.limit, query.offset)
    return pages.answer([await _schedule(request, row) for row in rows], total, query)


async def get_schedule(request: web.Request) -> web.Response:
    """The schedule and its latest runs."""
    row = await _load(request)
    _, runs = await schedules.page_runs(request.app[keys.PG_POOL], row["id"], RECENT_RUNS, 0)
    return web.json_response({**await _schedule(request, row), "runs": [_run(run) for run in runs]})


async def update_schedule(request: web.Request) -> web.Response:
    """PATCH: the fields given change; `paused: false` resumes without catching up the days paused."""
    schedule_id = _schedule_id(request)
    body = await parse_body(request, ScheduleUpdate)
    given = body.model_fields_set
    cipher = request.app[keys.CIPHER]
    change = schedules.Change(
        run_at=_run_at(body.time) if body.time is not None else None,
        token_enc=cipher.encrypt(body.token) if body.token is not None else None,
        upload_given="upload" in given,
        upload_target=body.upload.target if body.upload else None,
        paused=body.paused,
        callback_url_given="callback_url" in given,
        callback_url=body.callback_url,
    )
    return await _change(request, schedule_id, change, body.token)


async def pause_schedule(request: web.Request) -> web.Response:
    return await _change(request, _schedule_id(request), schedules.Change(paused=True))


async def resume_schedule(request: web.Request) -> web.Response:
    """The days paused are skipped: runs start again with the counter-local yesterday."""
    return await _change(request, _schedule_id(request), schedules.Change(paused=False))


async def delete_schedule(request: web.Request) -> web.Response:
    """No more runs; the runs made stay (a new schedule for the counter does not score their days again)."""
    if not await schedules.delete(request.app[keys.PG_POOL], _schedule_id(request)):
        raise errors.NotFound("Schedule not found")
    return web.Response(status=204)


async def list_runs(request: web.Request) -> web.Response:
    """GET /schedules/{id}/runs: latest day first."""
    row = await _load(request)
    query = parse_query(request, pages.PageQuery)
    total, runs = await schedules.page_runs(request.app[keys.PG_POOL], row["id"], query.limit, query.offset)
    return pages.answer([_run(run) for run in runs], total, query)


async def _change(
    request: web.Request, schedule_id: uuid.UUID, change: schedules.Change, token: str | None = None
) -> web.Response:
    pool = request.app[keys.PG_POOL]
    if change.paused is False:  # a resume: the days paused are skipped
        row = await schedules.get(pool, schedule_id)
        if row is None:
            raise errors.NotFound("Schedule not found")
        zone = await counter_zone(request, row["counter"], token)
        change = change._replace(resume_first_day=schedule_days.yesterday(_now(), zone))
    if not await schedules.update(pool, schedule_id, change):
        raise errors.NotFound("Schedule not found")
    return web.json_response(await _schedule(request, await _load(request, schedule_id)))


async def counter_zone(request: web.Request, counter: int, token: str | None = None) -> ZoneInfo:
    """The counter's time zone: asked of the Management API with `token` (then cached), else the one cached
    (COUNTER_TIMEZONE when none is)."""
    zones = request.app[keys.ZONES]
    return await zones.zone(counter, token) if token is not None else await zones.cached(counter)


async def _schedule(request: web.Request, row: asyncpg.Record) -> dict[str, Any]:
    """A schedule as every endpoint shows it, never with its token."""
    zone = await counter_zone(request, row["counter"])
    next_run = None
    if not row["paused"]:
        first_day, last_scored = row["first_day"], row["last_scored"]
        next_run = schedule_days.next_run_at(_now(), row["run_at"], zone, first_day, last_scored)
    last_run = None
    if row["last_day"] is not None:
        last_run = _run(
            {
                "day": row["last_day"],
                "kind": row["last_kind"],
                "task_id": row["last_task_id"],
                "status": row["last_status"],
                "upload_id": row["last_upload_id"],
                "upload_status": row["last_upload_status"],
                "note": row["last_note"],
                "created_at": row["last_created_at"],
            }
        )
    return {
        "schedule_id": str(row["id"]),
        "counter": row["counter"],
        "time": row["run_at"].strftime("%H:%M"),
        "timezone": zone.key,
        "upload": {"target": row["upload_target"]} if row["upload_target"] is not None else None,
        "paused": row["paused"],
        "callback_url": row["callback_url"],
        "created_at": timestamps.iso(row["created_at"]),
        "updated_at": timestamps.iso(row["updated_at"]),
        "next_run_at": timestamps.iso(next_run),
        "last_run": last_run,
    }


def _run(run: Any) -> dict[str, Any]:
    return {
        "date": run["day"].isoformat(),
        "kind": run["kind"],
        "task_id": str(run["task_id"]),
        "status": run["status"],
        "upload_id": str(run["upload_id"]) if run["upload_id"] is not None else None,
        # the upload's own status, as GET /conversions/{upload_id}/status words it
        "upload_status": upload_status_word(run["upload_status"]) if run["upload_status"] else None,
        "note": run["note"],
        "created_at": timestamps.iso(run["created_at"]),
    }


async def _load(request: web.Request, schedule_id: uuid.UUID | None = None) -> asyncpg.Record:
    row = await schedules.get(request.app[keys.PG_POOL], schedule_id or _schedule_id(request))
    if row is None:
        raise errors.NotFound("Schedule not found")
    return row


def _schedule_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["schedule_id"])
    except ValueError:
        raise errors.NotFound("Schedule not found") from None


def _run_at(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
