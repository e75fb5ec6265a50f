"""Scoring task endpoints: create, status, result, retry."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from gateway import callbacks, keys, pages, timestamps
from gateway.bodies import parse_body, parse_query
from shared import broker, errors, logs
from shared.db import listings, notifications, outbox, tasks
from shared.schemas import ScoreTask, TaskCreate

MAX_COUNTER = 2**63 - 1
HISTOGRAM_BINS = 10
DEVICE_CLASSES = ("desktop", "mobile")


class TaskListQuery(pages.PageQuery):
    status: Literal["pending", "running", "completed", "failed"] | None = None
    counter: int | None = Field(None, ge=1, le=MAX_COUNTER)
    date: dt.date | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None


class ResultQuery(pages.PageQuery):
    client_id: str | None = Field(None, min_length=1, max_length=128)


async def create_task(request: web.Request) -> web.Response:
    body = await parse_body(request, TaskCreate)
    settings = request.app[keys.SETTINGS]
    token = body.token or (settings.metrika_token.get_secret_value() if settings.metrika_token else None)
    if not token:
        raise errors.BadRequest("token is required (in body or env)")
    counter = body.counter or settings.metrika_counter
    if not counter:
        raise errors.BadRequest("counter is required (in body or env)")
    task_id = uuid.uuid4()
    token_enc = request.app[keys.CIPHER].encrypt(token)
    pool = request.app[keys.PG_POOL]
    message = ScoreTask(task_id=task_id).model_dump(mode="json")
    async with pool.acquire() as conn, conn.transaction():
        await tasks.insert(conn, task_id, body.date, counter, token_enc, body.callback_url)
        outbox_id = await outbox.add(conn, broker.SCORE_TASKS, message, headers := logs.message_headers())
    await request.app[keys.RELAY].publish_now([outbox_id], broker.SCORE_TASKS, message, headers)
    return web.json_response({"task_id": str(task_id)})


async def retry_task(request: web.Request) -> web.Response:
    """A failed task runs again from the start: back to pending, and its message sent (through the outbox,
    in the same transaction, as for a new task)."""
    task = await load_task(request)
    if task["status"] != "failed":
        raise errors.Conflict(f"Only a failed task can be retried; this one is {task['status']}")
    pool = request.app[keys.PG_POOL]
    message = ScoreTask(task_id=task["id"]).model_dump(mode="json")
    async with pool.acquire() as conn, conn.transaction():
        if not await tasks.reset_failed(conn, task["id"]):
            raise errors.Conflict("Only a failed task can be retried; this one was retried meanwhile")
        outbox_id = await outbox.add(conn, broker.SCORE_TASKS, message, headers := logs.message_headers())
    await request.app[keys.RELAY].publish_now([outbox_id], broker.SCORE_TASKS, message, headers)
    return web.json_response({"task_id": str(task["id"]), "status": "pending"}, status=202)


async def task_status(request: web.Request) -> web.Response:
    task = await load_task(request)
    latest = await notifications.latest(request.app[keys.PG_POOL], [task["id"]])
    return web.json_response(
        {
            "status": task["status"],
            "progress": task["progress"],
            "message": task["message"],
            "started_at": timestamps.iso(task["started_at"]),
            "finished_at": timestamps.iso(task["finished_at"]),
            "error": task["error"],
            "total_visits": task["total_visits"],
            "model_version": task["model_version"],
            # a transient Metrika failure: the task waits, pending, for its next attempt
            "next_attempt_at": timestamps.iso(task["next_attempt_at"]),
            "attempts": task["attempts"],
            "last_error": task["last_error"],
            # the summary POSTed to the task's callback_url once it finished
            "notification": callbacks.notification(task["callback_url"], latest.get(task["id"])),
        }
    )


async def list_tasks(request: web.Request) -> web.Response:
    """GET /tasks: newest first, filtered by status, counter and the day scored (date, or a range)."""
    query = parse_query(request, TaskListQuery)
    filters = {
        "status": query.status,
        "counter": query.counter,
        "day": query.date,
        "day_from": query.date_from,
        "day_to": query.date_to,
    }
    queries = listings.tasks_queries(filters, query.limit, query.offset)
    total, rows = await listings.page(request.app[keys.PG_POOL], queries)
    data = [
        {
            "task_id": str(row["id"]),
            "counter": row["counter"],
            "date": row["day"].isoformat(),
            "status": row["status"],
            "progress": row["progress"],
            "message": row["message"],
            "created_at": pages.timestamp(row["created_at"]),
            "started_at": pages.timestamp(row["started_at"]),
            "finished_at": pages.timestamp(row["finished_at"]),
            "total_visits": row["total_visits"],
            "level4_visits": row["level4_visits"],
            "error": row["error"],
        }
        for row in rows
    ]
    return pages.answer(data, total, query)


async def task_summary(request: web.Request) -> web.Response:
    """A completed task's visits for charts: level-4+ visits by hour of visit start, the score
    distribution in tenths, and by device class ("unknown" for visits stored before it was kept)."""
    task = await load_task(request)
    _check_completed(task)
    by_hour = [0] * 24
    counts = [0] * HISTOGRAM_BINS
    by_device = dict.fromkeys((*DEVICE_CLASSES, "unknown"), 0)
    for group in await tasks.summary(request.app[keys.PG_POOL], task["id"]):
        n = group["n"]
        by_hour[group["hour"]] += n
        counts[max(group["bucket"], 1) - 1] += n
        device = group["device_class"]
        by_device[device if device in DEVICE_CLASSES else "unknown"] += n
    return web.json_response(
        {
            "task_id": str(task["id"]),
            "total_visits": task["total_visits"],
            "level4_visits": sum(counts),
            "by_hour": by_hour,
            "score_histogram": {
                "edges": [i / HISTOGRAM_BINS for i in range(HISTOGRAM_BINS + 1)],
                "counts": counts,
            },
            "by_device": by_device,
        }
    )


async def task_result(request: web.Request) -> web.Response:
    """The level-4+ visits in the scorer's order; `client_id` keeps one visitor's (an exact match)."""
    task = await load_task(request)
    query = parse_query(request, ResultQuery)
    _check_completed(task)
    pool = request.app[keys.PG_POOL]
    if query.client_id is None:
        total = await tasks.count_visits(pool, task["id"])
        rows = await tasks.page_visits(pool, task["id"], query.limit, query.offset)
    else:
        total = await tasks.count_client_visits(pool, task["id"], query.client_id)
        rows = await tasks.page_client_visits(pool, task["id"], query.client_id, query.limit, query.offset)
    data = [
        {
            "visitId": row["visit_id"],
            "clientId": row["client_id"],
            "dateTime": row["date_time"].strftime("%Y-%m-%d %H:%M:%S"),
            "visitDuration": row["visit_duration"],
            "score": round(row["score"], 6),
            "model_version": row["model_version"],
        }
        for row in rows
    ]
    return pages.answer(data, total, query)


def _check_completed(task: Any) -> None:
    """409 if the task failed or is still pending or running."""
    if task["status"] == "failed":
        raise errors.Conflict(f"Task failed: {task['error']}")
    if task["status"] != "completed":
        raise errors.Conflict("Task not finished")


async def load_task(request: web.Request, task_id: uuid.UUID | str | None = None) -> Any:
    """The task named by `task_id` (default: the path's {task_id}); 404 "Task not found" otherwise."""
    raw = request.match_info["task_id"] if task_id is None else task_id
    try:
        parsed = raw if isinstance(raw, uuid.UUID) else uuid.UUID(raw)
    except ValueError:
        raise errors.NotFound("Task not found") from None
    task = await tasks.get(request.app[keys.PG_POOL], parsed)
    if task is None:
        raise errors.NotFound("Task not found")
    return task
