"""Scoring task endpoints: create, status, result, retry."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway import callbacks, keys, pages, timestamps
from gateway.bodies import parse_body, parse_query
from shared import broker, errors, logs
from shared.db import listings, notifications, outbox, tasks
from shared.schemas import ScoreTask, TaskCreate

MAX_COUNTER = 2**63 - 1
HISTOGRAM_BINS = 10
DEVICE_CLASSES = ("desktop", "mobile")


class TaskListQuery(pages.PageQuery):
    status: Literal["pending", "running", "completed", "failed"] | None = Field(
        None, description="Day tasks in this status (a backfill's status is its days' aggregate)"
    )
    counter: int | None = Field(None, ge=1, le=MAX_COUNTER)
    date: dt.date | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    parent_id: uuid.UUID | None = Field(None, description="The days of this backfill")


class ResultQuery(pages.PageQuery):
    client_id: str | None = Field(None, min_length=1, max_length=128)
    date: dt.date | None = Field(None, description="A backfill: this day's visits only")
    run: int | None = Field(
        None, ge=1, le=2**31 - 1, description="A day task: this run (default: the latest completed)"
    )


class SummaryQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    date: dt.date | None = Field(None, description="A backfill: this day only")
    run: int | None = Field(
        None, ge=1, le=2**31 - 1, description="A day task: this run (default: the latest completed)"
    )


async def create_task(request: web.Request) -> web.Response:
    """One day: a task. A backfill (date_from..date_to): a parent and a task per day, in one transaction
    with the messages of the first BACKFILL_PARALLEL days (each day that finishes queues the next); the
    parent is never scored itself."""
    body = await parse_body(request, TaskCreate)
    settings = request.app[keys.SETTINGS]
    token = body.token or (settings.metrika_token.get_secret_value() if settings.metrika_token else None)
    if not token:
        raise errors.BadRequest("token is required (in body or env)")
    counter = body.counter or settings.metrika_counter
    if not counter:
        raise errors.BadRequest("counter is required (in body or env)")
    await _check_past(request, body, counter, token)
    task_id = uuid.uuid4()
    token_enc = request.app[keys.CIPHER].encrypt(token)
    pool = request.app[keys.PG_POOL]
    if body.date is None:
        days = [tasks.Day(uuid.uuid4(), day) for day in body.days()]
        parallel = settings.backfill_parallel
        messages = [ScoreTask(task_id=day.task_id).model_dump(mode="json") for day in days[:parallel]]
        async with pool.acquire() as conn, conn.transaction():
            await tasks.insert_backfill(
                conn, task_id, days, counter, token_enc, body.callback_url, parallel=parallel
            )
            rows = await outbox.add_many(
                conn, broker.SCORE_TASKS, messages, headers := logs.message_headers()
            )
        await _publish(request, rows, headers)
        answer = [{"date": day.day.isoformat(), "task_id": str(day.task_id)} for day in days]
        return web.json_response({"task_id": str(task_id), "days": answer})
    message = ScoreTask(task_id=task_id).model_dump(mode="json")
    async with pool.acquire() as conn, conn.transaction():
        await tasks.insert(conn, task_id, body.date, counter, token_enc, body.callback_url)
        outbox_id = await outbox.add(conn, broker.SCORE_TASKS, message, headers := logs.message_headers())
    await request.app[keys.RELAY].publish_now([outbox_id], broker.SCORE_TASKS, message, headers)
    return web.json_response({"task_id": str(task_id)})


async def _check_past(request: web.Request, body: TaskCreate, counter: int, token: str) -> None:
    """422 unless `date` (or `date_to`, and so `date_from`) is before the counter's local today: the Logs
    API serves only the days its counter has finished (a Novosibirsk counter's day ends 4 h before
    Moscow's). The zone is the counter's own (the Management API, cached), COUNTER_TIMEZONE as fallback."""
    today = await request.app[keys.ZONES].today(counter, token, _now())
    problems = [
        {
            "loc": ["body", name],
            "msg": f"Value error, {name} must be in the past: the Logs API has no data for today or later "
            f"(the counter's today is {today})",
            "type": "value_error",
        }
        for name in ("date", "date_from", "date_to")
        if (value := getattr(body, name)) is not None and value >= today
    ]
    if problems:
        raise errors.Unprocessable(problems)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _publish(request: web.Request, rows: Sequence[tuple[int, Any]], headers: dict[str, Any]) -> None:
    """Publish committed ScoreTask outbox rows, one message each, side by side (confirms overlap)."""
    relay = request.app[keys.RELAY]
    await asyncio.gather(*(relay.publish_now([i], broker.SCORE_TASKS, body, headers) for i, body in rows))


async def rescore_task(request: web.Request) -> web.Response:
    """The next run of a day (late data: Metrika's sessions change for about 3 days). Its result is served
    once it completes; until then, and if it fails, the earlier completed run stays served."""
    task = await load_task(request)
    if task["day_to"] is not None:
        raise errors.Conflict("A backfill is re-scored day by day: POST /tasks/{day's task_id}/rescore")
    root = tasks.root_of(task)
    busy = [run for run in await tasks.runs(request.app[keys.PG_POOL], root) if run["status"] in OPEN]
    if busy:
        raise errors.Conflict(
            f"Run {busy[-1]['run']} of this day is {busy[-1]['status']}: wait for it to end"
        )
    async with request.app[keys.PG_POOL].acquire() as conn, conn.transaction():
        new_id = await tasks.insert_rescore(conn, task["id"])
        if new_id is None:
            raise errors.NotFound("Task not found")
        message = ScoreTask(task_id=new_id).model_dump(mode="json")
        outbox_id = await outbox.add(conn, broker.SCORE_TASKS, message, headers := logs.message_headers())
        new = await tasks.get(conn, new_id)
        assert new is not None
    await request.app[keys.RELAY].publish_now([outbox_id], broker.SCORE_TASKS, message, headers)
    body = {"task_id": str(new_id), "run": new["run"], "rescore_of": str(root), "status": "pending"}
    return web.json_response(body, status=202)


async def retry_task(request: web.Request) -> web.Response:
    """A failed task runs again from the start: back to pending, and its message sent (through the outbox,
    in the same transaction, as for a new task). A backfill: each of its failed days does, in its turn (at
    most BACKFILL_PARALLEL days of a backfill queued at once); so does a backfill's day retried alone."""
    task = await load_task(request)
    pool = request.app[keys.PG_POOL]
    parallel = request.app[keys.SETTINGS].backfill_parallel
    if task["day_to"] is not None:
        days = [d for d in await tasks.days(pool, task["id"]) if _day_status(d) == "failed"]
        if not days:
            raise errors.Conflict("No day of this backfill failed: there is nothing to retry")
        async with pool.acquire() as conn, conn.transaction():
            # a day's own task waits for its turn; a failed re-score run of a day is sent at once
            days = [d for d in days if await tasks.reset_failed(conn, d["latest_id"])]
            failed = [d["latest_id"] for d in days]
            await tasks.unrelease(conn, [d["id"] for d in days if d["latest_id"] == d["id"]])
            headers = logs.message_headers()
            runs = [
                ScoreTask(task_id=d["latest_id"]).model_dump(mode="json")
                for d in days
                if d["latest_id"] != d["id"]
            ]
            rows = await outbox.add_many(conn, broker.SCORE_TASKS, runs, headers) if runs else []
            rows += await tasks.release(conn, task["id"], parallel, headers, wait=True) or []
        await _publish(request, rows, headers)
        retried = [str(day) for day in failed]
        return web.json_response(
            {"task_id": str(task["id"]), "status": "pending", "days": retried}, status=202
        )
    if task["status"] != "failed":
        raise errors.Conflict(f"Only a failed task can be retried; this one is {task['status']}")
    if task["parent_id"] is not None:  # a backfill's day: in its turn
        async with pool.acquire() as conn, conn.transaction():
            if not await tasks.reset_failed(conn, task["id"]):
                raise errors.Conflict("Only a failed task can be retried; this one was retried meanwhile")
            await tasks.unrelease(conn, [task["id"]])
            headers = logs.message_headers()
            rows = await tasks.release(conn, task["parent_id"], parallel, headers, wait=True) or []
        await _publish(request, rows, headers)
        return web.json_response({"task_id": str(task["id"]), "status": "pending"}, status=202)
    message = ScoreTask(task_id=task["id"]).model_dump(mode="json")
    async with pool.acquire() as conn, conn.transaction():
        if not await tasks.reset_failed(conn, task["id"]):
            raise errors.Conflict("Only a failed task can be retried; this one was retried meanwhile")
        outbox_id = await outbox.add(conn, broker.SCORE_TASKS, message, headers := logs.message_headers())
    await request.app[keys.RELAY].publish_now([outbox_id], broker.SCORE_TASKS, message, headers)
    return web.json_response({"task_id": str(task["id"]), "status": "pending"}, status=202)


async def task_status(request: web.Request) -> web.Response:
    task = await load_task(request)
    pool = request.app[keys.PG_POOL]
    if task["day_to"] is not None:
        answer = _backfill_status(task, await tasks.days(pool, task["id"]))
        # the one summary POSTed to the backfill's callback_url once its last day finished
        latest = await notifications.latest(pool, [task["id"]])
        answer["notification"] = callbacks.notification(task["callback_url"], latest.get(task["id"]))
        return web.json_response(answer)
    latest = await notifications.latest(pool, [task["id"]])
    runs = await tasks.runs(pool, tasks.root_of(task))
    completed = [run["run"] for run in runs if run["status"] == "completed"]
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
            "kind": "day",
            "date": task["day"].isoformat(),
            "parent_id": _text(task["parent_id"]),
            # re-score runs of the day: this task's, the latest, and the one its results serve
            "run": task["run"],
            "rescore_of": _text(task["rescore_of"]),
            "latest_run": runs[-1]["run"] if runs else task["run"],
            "served_run": completed[-1] if completed else None,
        }
    )


# a day's status, of its runs: completed once a run completed (a re-score under way keeps serving it),
# else its latest run's
OPEN = ("pending", "running")


def _day_status(day: Any) -> str:
    return "completed" if day["served_id"] is not None else str(day["latest_status"])


def _backfill_status(task: Any, days: Sequence[Any]) -> dict[str, Any]:
    """A backfill's status from its days': completed when every day is, failed when every day has ended
    and one failed, pending while none has started, running otherwise; progress is their average."""
    statuses = [_day_status(day) for day in days]
    counts = {word: statuses.count(word) for word in ("pending", "running", "completed", "failed")}
    if counts["completed"] == len(days):
        status = "completed"
    elif counts["pending"] + counts["running"] == 0:
        status = "failed"
    elif counts["pending"] == len(days):
        status = "pending"
    else:
        status = "running"
    progress = [100 if _day_status(day) == "completed" else day["latest_progress"] for day in days]
    ended = status in ("completed", "failed")
    finished = [day["finished_at"] for day in days if day["finished_at"] is not None]
    started = [day["started_at"] for day in days if day["started_at"] is not None]
    served = [day for day in days if day["served_id"] is not None]
    return {
        "status": status,
        "progress": round(sum(progress) / len(days)) if days else 0,
        "message": f"{counts['completed']} of {len(days)} days completed, {counts['failed']} failed",
        "started_at": timestamps.iso(min(started)) if started else None,
        "finished_at": timestamps.iso(max(finished)) if ended and finished else None,
        "error": f"{counts['failed']} of {len(days)} days failed" if counts["failed"] else None,
        "total_visits": sum(day["total_visits"] or 0 for day in served) if served else None,
        "model_version": None,
        "next_attempt_at": None,
        "attempts": 0,
        "last_error": None,
        "notification": None,
        "kind": "backfill",
        "date": task["day"].isoformat(),
        "date_to": task["day_to"].isoformat(),
        "parent_id": None,
        "run": None,
        "rescore_of": None,
        "latest_run": None,
        "served_run": None,
        "days": [
            {
                "date": day["day"].isoformat(),
                "task_id": str(day["id"]),
                "status": _day_status(day),
                "progress": 100 if day["served_id"] is not None else day["latest_progress"],
                "latest_run": day["latest_run"],
                "served_run": day["served_run"],
                "level4_visits": day["level4_visits"],
                "error": day["latest_error"] if _day_status(day) == "failed" else None,
            }
            for day in days
        ],
    }


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


async def list_tasks(request: web.Request) -> web.Response:
    """GET /tasks: newest first, filtered by status, counter, the day scored (date, or a range) and the
    backfill (parent_id). A backfill is listed with its days' aggregate status and progress."""
    query = parse_query(request, TaskListQuery)
    filters = {
        "status": query.status,
        "counter": query.counter,
        "day": query.date,
        "day_from": query.date_from,
        "day_to": query.date_to,
        "parent_id": query.parent_id,
    }
    queries = listings.tasks_queries(filters, query.limit, query.offset)
    pool = request.app[keys.PG_POOL]
    total, rows = await listings.page(pool, queries)
    data = []
    for row in rows:
        item = {
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
            "kind": "day" if row["day_to"] is None else "backfill",
            "date_to": row["day_to"].isoformat() if row["day_to"] is not None else None,
            "parent_id": _text(row["parent_id"]),
            "run": row["run"],
            "rescore_of": _text(row["rescore_of"]),
        }
        if row["day_to"] is not None:  # a backfill: its days' aggregate (the page holds a few at most)
            aggregate = _backfill_status(row, await tasks.days(pool, row["id"]))
            item |= {name: aggregate[name] for name in ("status", "progress", "message", "error")}
            item |= {name: aggregate[name] for name in ("started_at", "finished_at", "total_visits")}
            item["level4_visits"] = sum(day["level4_visits"] or 0 for day in aggregate["days"])
            item["run"] = None
        data.append(item)
    return pages.answer(data, total, query)


async def task_summary(request: web.Request) -> web.Response:
    """A completed task's visits for charts: level-4+ visits by hour of visit start, the score
    distribution in tenths, and by device class ("unknown" for visits stored before it was kept). Of the
    run a day serves; of a backfill, every completed day's (or one: `date`)."""
    task = await load_task(request)
    query = parse_query(request, SummaryQuery)
    pool = request.app[keys.PG_POOL]
    served = await _served_days(request, task, query.date, query.run)
    by_hour = [0] * 24
    counts = [0] * HISTOGRAM_BINS
    by_device = dict.fromkeys((*DEVICE_CLASSES, "unknown"), 0)
    for group in await tasks.summary_of_many(pool, [day.task_id for day in served]):
        n = group["n"]
        by_hour[group["hour"]] += n
        counts[max(group["bucket"], 1) - 1] += n
        device = group["device_class"]
        by_device[device if device in DEVICE_CLASSES else "unknown"] += n
    total_visits = [day.total_visits for day in served if day.total_visits is not None]
    return web.json_response(
        {
            "task_id": str(task["id"]),
            "total_visits": sum(total_visits) if total_visits else None,
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
    """The level-4+ visits in the scorer's order; `client_id` keeps one visitor's (an exact match). A day
    task serves its latest completed run (`run`: another one); a backfill, its completed days in day
    order (`date`: one of them), each visit with its "date"."""
    task = await load_task(request)
    query = parse_query(request, ResultQuery)
    pool = request.app[keys.PG_POOL]
    served = await _served_days(request, task, query.date, query.run)
    if query.client_id is None:
        sizes = [day.level4_visits for day in served]
    else:
        found = await tasks.count_client_visits_by_task(
            pool, [day.task_id for day in served], query.client_id
        )
        sizes = [found.get(day.task_id, 0) for day in served]
    data: list[dict[str, Any]] = []
    skip = query.offset
    for day, size in zip(served, sizes, strict=True):  # the page's days, from the offset on
        if skip >= size:
            skip -= size
            continue
        if len(data) >= query.limit:
            break
        want = query.limit - len(data)
        if query.client_id is None:
            rows = await tasks.page_visits(pool, day.task_id, want, skip)
        else:
            rows = await tasks.page_client_visits(pool, day.task_id, query.client_id, want, skip)
        skip = 0
        for row in rows:
            visit = {
                "visitId": row["visit_id"],
                "clientId": row["client_id"],
                "dateTime": row["date_time"].strftime("%Y-%m-%d %H:%M:%S"),
                "visitDuration": row["visit_duration"],
                "score": round(row["score"], 6),
                "model_version": row["model_version"],
            }
            if task["day_to"] is not None:
                visit["date"] = day.day.isoformat()
            data.append(visit)
    return pages.answer(data, sum(sizes), query)


class ServedDay(NamedTuple):
    """A day's results: the completed run served (its task), with its counts."""

    day: dt.date
    task_id: uuid.UUID
    level4_visits: int
    total_visits: int | None


async def _served_days(
    request: web.Request, task: Any, day: dt.date | None, run: int | None
) -> list[ServedDay]:
    """The runs whose visits a result or summary shows: of a day task, its latest completed run (or run
    `run`); of a backfill, each completed day's (or day `day`'s). 409 while there is none, 404 for a run
    or day that does not exist."""
    pool = request.app[keys.PG_POOL]
    if task["day_to"] is not None:
        if run is not None:
            raise errors.BadRequest("run applies to a day's task: ask /tasks/{day's task_id}/result?run=")
        days = await tasks.days(pool, task["id"])
        if day is not None:
            days = [d for d in days if d["day"] == day]
            if not days:
                raise errors.NotFound(f"{day} is not a day of this backfill")
            if days[0]["served_id"] is None:
                _check_completed({"status": days[0]["latest_status"], "error": days[0]["latest_error"]})
        served = [d for d in days if d["served_id"] is not None]
        if not served:
            status = _backfill_status(task, days)
            raise errors.Conflict(f"No day of this backfill is completed yet ({status['message']})")
        return [
            ServedDay(d["day"], d["served_id"], d["level4_visits"] or 0, d["total_visits"]) for d in served
        ]
    if day is not None and day != task["day"]:
        raise errors.NotFound(f"This task scores {task['day']}, not {day}")
    root = tasks.root_of(task)
    if run is not None:
        runs = {row["run"]: row for row in await tasks.runs(pool, root)}
        if run not in runs:
            raise errors.NotFound(f"Run {run} not found: this day has runs 1 to {max(runs)}")
        found = await tasks.get(pool, runs[run]["id"])
        if found is None:  # deleted meanwhile
            raise errors.NotFound(f"Run {run} not found")
        _check_completed(found)
    else:
        found = await tasks.served(pool, root)
        if found is None:
            _check_completed(task)
            raise errors.Conflict("Task not finished")  # (a completed task is served: not reached)
    return [ServedDay(found["day"], found["id"], found["level4_visits"] or 0, found["total_visits"])]


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
