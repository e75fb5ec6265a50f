"""Scoring task endpoints: create, status, result, retry."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from aiohttp import web

from gateway import callbacks, keys, pages
from gateway.bodies import parse_body, parse_query
from shared import broker, errors
from shared.db import notifications, outbox, tasks
from shared.schemas import ScoreTask, TaskCreate


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
        outbox_id = await outbox.add(conn, broker.SCORE_TASKS, message)
    await request.app[keys.RELAY].publish_now([outbox_id], broker.SCORE_TASKS, message)
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
        outbox_id = await outbox.add(conn, broker.SCORE_TASKS, message)
    await request.app[keys.RELAY].publish_now([outbox_id], broker.SCORE_TASKS, message)
    return web.json_response({"task_id": str(task["id"]), "status": "pending"}, status=202)


async def task_status(request: web.Request) -> web.Response:
    task = await load_task(request)
    latest = await notifications.latest(request.app[keys.PG_POOL], [task["id"]])
    return web.json_response(
        {
            "status": task["status"],
            "progress": task["progress"],
            "message": task["message"],
            "started_at": _iso(task["started_at"]),
            "finished_at": _iso(task["finished_at"]),
            "error": task["error"],
            "total_visits": task["total_visits"],
            "model_version": task["model_version"],
            # a transient Metrika failure: the task waits, pending, for its next attempt
            "next_attempt_at": _iso(task["next_attempt_at"]),
            "attempts": task["attempts"],
            "last_error": task["last_error"],
            # the summary POSTed to the task's callback_url once it finished
            "notification": callbacks.notification(task["callback_url"], latest.get(task["id"])),
        }
    )


async def task_result(request: web.Request) -> web.Response:
    task = await load_task(request)
    query = parse_query(request, pages.PageQuery)
    if task["status"] == "failed":
        raise errors.Conflict(f"Task failed: {task['error']}")
    if task["status"] != "completed":
        raise errors.Conflict("Task not finished")
    pool = request.app[keys.PG_POOL]
    total = await tasks.count_visits(pool, task["id"])
    rows = await tasks.page_visits(pool, task["id"], query.limit, query.offset)
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


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
