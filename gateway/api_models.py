"""The shapes /openapi.json describes that no handler parses: every answer, the error shapes, and the
request bodies judged row by row (shared.conversions) rather than by one model.

Each model carries one example (`_shape(example)`); a test validates every example against the published
schema, so an example that drifts from its model fails CI. Timestamps are gateway.timestamps.iso's format.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from shared.schemas import Token

_TASK = "3f2b8c1e-5d4a-4e7b-9c0d-1a2b3c4d5e6f"
_UPLOAD = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
_WEBHOOK = "550e8400-e29b-41d4-a716-446655440000"
_BATCH = "550e8400-e29b-41d4-a716-446655440001"
_SECRET = "KzBWYXzDPrfzv3LpUhWBqNX8JQnbGc_wEKUzUhM7uyA"
_AT = "2026-11-26T19:30:35.123456+00:00"
_LATER = "2026-11-26T19:31:02.004211+00:00"
_URL = f"https://api.example.com/webhook/offline-conversions/{_WEBHOOK}"


def _shape(example: Any) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


# errors: every one is {"detail": ...}, some with more fields (errors.AppError's `extra`)


class Error(BaseModel):
    """Every 4xx and the 503: a sentence saying what is wrong."""

    model_config = _shape({"detail": "Task not found"})

    detail: str


class Problem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loc: list[str | int] = Field(description='Where: "body", "query" or "path", then the field')
    msg: str
    type: str


class Invalid(BaseModel):
    """422: the request does not fit its schema (pydantic's list of problems, as FastAPI answered)."""

    model_config = _shape(
        {"detail": [{"loc": ["body", "date"], "msg": "Input should be a valid date", "type": "date_type"}]}
    )

    detail: list[Problem]


class RowError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="The row's position in the request, from 0")
    field: str | None = Field(description="The field at fault; null: the row as a whole")
    reason: str


class InvalidRows(BaseModel):
    """400 when a request's conversions are invalid: nothing was stored; each bad row is listed."""

    model_config = _shape(
        {
            "detail": "1 of 2 conversions are invalid; nothing was stored",
            "errors": [{"index": 1, "field": "currency", "reason": "is not an active ISO 4217 code"}],
        }
    )

    detail: str
    errors: list[RowError]


class InternalError(BaseModel):
    """500: never the exception; `error_id` finds the traceback in the gateway's log."""

    model_config = _shape({"detail": "Internal server error", "error_id": "9b2f6c0e8d7a4b1c9e3f5a6d7c8b9a0f"})

    detail: Literal["Internal server error"]
    error_id: str


# answers


class Health(BaseModel):
    """200 while Postgres answers, 503 (with this shape) while it does not."""

    model_config = _shape({"status": "ok", "database": True, "broker_connected": True, "outbox_pending": 0})

    status: Literal["ok", "unavailable"]
    database: bool
    broker_connected: bool
    outbox_pending: int | None


class Pagination(BaseModel):
    model_config = ConfigDict(extra="forbid")

    total: int
    limit: int
    offset: int
    has_more: bool


class BackfillDayCreated(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: dt.date
    task_id: uuid.UUID = Field(description="The day's task (run 1)")


class TaskCreated(BaseModel):
    """A task, or a backfill: its parent's task_id and a task per day."""

    model_config = _shape(
        {
            "task_id": _TASK,
            "days": [{"date": "2025-07-01", "task_id": "9a1f7c2e-3b4d-4e5f-8a6b-7c8d9e0f1a2b"}],
        }
    )

    task_id: uuid.UUID
    days: list[BackfillDayCreated] | None = Field(None, description="A backfill's days (absent for one day)")


class TaskRescored(BaseModel):
    model_config = _shape({"task_id": _TASK, "run": 2, "rescore_of": _TASK, "status": "pending"})

    task_id: uuid.UUID = Field(description="The new run's task")
    run: int = Field(description="Its run number: 2 for the first re-score")
    rescore_of: uuid.UUID = Field(description="The day's first task (run 1)")
    status: Literal["pending"]


class BackfillDay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: dt.date
    task_id: uuid.UUID = Field(description="The day's first task (run 1)")
    status: Literal["pending", "running", "completed", "failed"] = Field(
        description="completed once a run of the day completed; else its latest run's"
    )
    progress: int
    latest_run: int
    served_run: int | None = Field(description="The completed run its results serve")
    level4_visits: int | None
    error: str | None


class Notification(BaseModel):
    """How the signed summary POSTed to the callback URL fared (README "Notifications")."""

    model_config = _shape(
        {
            "url": "https://crm.example.com/hooks/metrika",
            "status": "delivered",
            "attempts": 1,
            "last_error": None,
            "delivered_at": "2026-11-26T19:31:02.000000+00:00",
        }
    )

    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_error: str | None
    delivered_at: dt.datetime | None


_NOTIFICATION = Field(None, description="Null without a callback URL; else how its summary's delivery fared")


class TaskStatus(BaseModel):
    model_config = _shape(
        {
            "status": "completed",
            "progress": 100,
            "message": "31 level-4+ visits of 1204",
            "started_at": _AT,
            "finished_at": _LATER,
            "error": None,
            "total_visits": 1204,
            "model_version": "level4-2026.11",
            "next_attempt_at": None,
            "attempts": 0,
            "last_error": None,
        }
    )

    status: Literal["pending", "running", "completed", "failed"]
    progress: int
    message: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None
    total_visits: int | None
    model_version: str | None
    next_attempt_at: dt.datetime | None = Field(description="While Metrika fails for now: the next attempt")
    attempts: int
    last_error: str | None
    notification: Notification | None = _NOTIFICATION
    kind: Literal["day", "backfill"] = Field(
        "day", description="backfill: a parent whose status and progress are its days' aggregate"
    )
    date: dt.date | None = Field(None, description="The day scored (a backfill: its first day)")
    date_to: dt.date | None = Field(None, description="A backfill's last day")
    parent_id: uuid.UUID | None = Field(None, description="A backfill's day: its parent")
    run: int | None = Field(None, description="A day task's run (1, then 2.. for re-scores)")
    rescore_of: uuid.UUID | None = Field(None, description="A re-score: the day's first task")
    latest_run: int | None = Field(None, description="The day's latest run")
    served_run: int | None = Field(None, description="The completed run the result endpoints serve")
    days: list[BackfillDay] | None = Field(None, description="A backfill's days")


class Visit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visitId: str = Field(description="Metrika's visit id, exact (a uint64 as text)")
    clientId: str = Field(description="Metrika's ClientID, exact (a uint64 as text)")
    dateTime: str = Field(description="The visit's start as Metrika reports it (the counter's time zone)")
    visitDuration: int
    score: float
    model_version: str
    date: dt.date | None = Field(None, description="A backfill's result: the visit's day")


class TaskResult(BaseModel):
    """A page of the task's level-4+ visits."""

    model_config = _shape(
        {
            "data": [
                {
                    "visitId": "7328468912345678901",
                    "clientId": "175085690441127503",
                    "dateTime": "2025-07-01 12:34:56",
                    "visitDuration": 123,
                    "score": 0.912345,
                    "model_version": "level4-2026.11",
                }
            ],
            "pagination": {"total": 31, "limit": 100, "offset": 0, "has_more": False},
        }
    )

    data: list[Visit]
    pagination: Pagination


class TaskRetried(BaseModel):
    model_config = _shape({"task_id": _TASK, "status": "pending"})

    task_id: uuid.UUID
    status: Literal["pending"]
    days: list[uuid.UUID] | None = Field(None, description="A backfill: the tasks of the days retried")


class UploadCreated(BaseModel):
    model_config = _shape({"upload_id": _UPLOAD, "status": "pending"})

    upload_id: uuid.UUID
    status: Literal["pending"]


class BatchProblem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int | None = Field(description="The row, from 0; null: the batch or one of its files")
    reason: str
    status: Literal["duplicate", "ignored"] | None = Field(
        None, description="Not an error: the row was sent once already, or made no conversion"
    )
    id_type: str | None = Field(None, description="The file's identifier type (Metrika's note per file)")


_STATUS_WORDS = "pending, uploaded, processing, then processed or error"
_UPLOAD_EXAMPLE: dict[str, Any] = {
    "upload_id": _UPLOAD,
    "status": "processed",
    "errors": None,
    "processed": 31,
    "total": 31,
    "next_attempt_at": None,
    "attempts": 0,
    "last_error": None,
}


class UploadStatus(BaseModel):
    """An upload (bulk or single); its final success is "processed", the replaced API's word."""

    model_config = _shape(_UPLOAD_EXAMPLE)

    upload_id: uuid.UUID
    status: str = Field(description=_STATUS_WORDS)
    errors: list[BatchProblem] | None
    processed: int
    total: int
    next_attempt_at: dt.datetime | None
    attempts: int
    last_error: str | None
    notification: Notification | None = _NOTIFICATION


class TaskUploads(RootModel[list[UploadStatus]]):
    """Every upload made from the task, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [[_UPLOAD_EXAMPLE]]})


class UploadRetried(BaseModel):
    model_config = _shape({"upload_id": _UPLOAD, "status": "pending", "retried": 2})

    upload_id: uuid.UUID
    status: Literal["pending"]
    retried: int = Field(description="Rows reopened (0: the upload was waiting; it is tried now)")


class BatchRetried(BaseModel):
    model_config = _shape({"batch_id": _BATCH, "status": "pending", "retried": 2})

    batch_id: uuid.UUID
    status: Literal["pending"]
    retried: int


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    routing_key: str
    reason: str
    body: Any = Field(description="The message as JSON, or its text if it is not JSON")
    created_at: dt.datetime
    replayed_at: dt.datetime | None
    replay_count: int


class DeadLetters(BaseModel):
    model_config = _shape(
        {
            "data": [
                {
                    "id": 7,
                    "routing_key": "conversion_uploads",
                    "reason": "Permanent: batch 550e8400-e29b-41d4-a716-446655440001 does not exist",
                    "body": {"batch_ids": [_BATCH]},
                    "created_at": _AT,
                    "replayed_at": None,
                    "replay_count": 0,
                }
            ],
            "pagination": {"total": 1, "limit": 100, "offset": 0, "has_more": False},
        }
    )

    data: list[DeadLetter]
    pagination: Pagination


class DeadLetterReplayed(BaseModel):
    model_config = _shape({"id": 7, "status": "replayed"})

    id: int
    status: Literal["replayed"]


class WebhookCreated(BaseModel):
    """The secret is shown here and at rotation only; for a CRM source `url` carries it."""

    model_config = _shape({"webhook_id": _WEBHOOK, "secret": _SECRET, "url": _URL})

    webhook_id: uuid.UUID
    secret: str
    url: str


_WEBHOOK_EXAMPLE: dict[str, Any] = {
    "webhook_id": _WEBHOOK,
    "name": "CRM System",
    "description": "Webhook for CRM system",
    "counter_id": 123456,
    "is_active": True,
    "created_at": _AT,
    "url": _URL,
    "source": "json",
    "mapping": None,
    "has_application_token": False,
    "has_bitrix_webhook_url": False,
}


class Webhook(BaseModel):
    """A webhook, never with its secret or tokens."""

    model_config = _shape(_WEBHOOK_EXAMPLE)

    webhook_id: uuid.UUID
    name: str
    description: str | None
    counter_id: int
    is_active: bool
    created_at: dt.datetime
    url: str
    source: Literal["json", "amocrm", "bitrix24"]
    mapping: dict[str, Any] | None
    has_application_token: bool
    has_bitrix_webhook_url: bool
    callback_url: str | None = Field(None, description="Where each finished batch's summary is POSTed")


class Webhooks(RootModel[list[Webhook]]):
    model_config = ConfigDict(json_schema_extra={"examples": [[_WEBHOOK_EXAMPLE]]})


class WebhookUpdated(Webhook):
    model_config = _shape({**_WEBHOOK_EXAMPLE, "batches_updated": 0})

    batches_updated: int = Field(description="Batches not uploaded yet that took the new token or counter")


class ConversionRow(BaseModel):
    """One offline conversion (shared.conversions judges it): `target`, `date_time` and one identifier
    (client_id, user_id, yclid, or else purchase_id). Ids are opaque strings or exact non-negative
    integers, never floats. A `date_time` without a zone is in the counter's time zone."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "client_id": "175085690441127503",
                    "target": "purchase",
                    "date_time": "2025-07-01T12:34:56",
                    "price": 1500.5,
                    "currency": "RUB",
                    "purchase_id": "order123",
                }
            ]
        },
    )

    target: str = Field(min_length=1, max_length=255)
    date_time: str = Field(description="ISO 8601 with a time of day, e.g. 2025-07-01T12:34:56+03:00")
    client_id: str | int | None = None
    user_id: str | int | None = None
    yclid: str | int | None = None
    purchase_id: str | int | None = None
    price: float | None = Field(None, ge=0)
    currency: str | None = Field(None, description="An active ISO 4217 code")


class SingleConversion(ConversionRow):
    """POST /conversions/single: one row, and the counter and token (or the environment's)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "client_id": "175085690441127503",
                    "target": "purchase",
                    "date_time": "2025-06-28T12:00:00",
                    "price": 1500.5,
                    "currency": "RUB",
                    "counter": 123456,
                    "token": "<TOKEN>",
                }
            ]
        },
    )

    counter: int | None = Field(None, gt=0, lt=2**32)
    token: Token | None = None


class WebhookSubmission(BaseModel):
    """A JSON webhook's body: 1 to 1000 conversions, at most 10 MB. (An amocrm or bitrix24 webhook takes
    the CRM's form body as the CRM sends it.)"""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "conversions": [
                        {
                            "client_id": "1234567890.1234567890",
                            "target": "purchase",
                            "date_time": "2025-07-01T12:34:56",
                            "price": 1500,
                            "currency": "RUB",
                            "purchase_id": "order123",
                        },
                        {"user_id": "user123", "target": "registration", "date_time": "2025-07-01T12:30:00"},
                    ]
                }
            ]
        },
    )

    conversions: list[ConversionRow] = Field(min_length=1, max_length=1000)


class BatchAccepted(BaseModel):
    """Stored (committed, with its message to the uploader): the batch's status tells what became of it.
    `rejected_count` with ?partial=true; `events` for an amocrm or bitrix24 webhook."""

    model_config = _shape({"batch_id": _BATCH, "status": "accepted", "accepted_count": 2})

    batch_id: uuid.UUID
    status: Literal["accepted"]
    accepted_count: int | None = None
    rejected_count: int | None = None
    events: int | None = None


class WebhookBatchStatus(BaseModel):
    """A webhook batch; its final success is "completed", the webhook API's word."""

    model_config = _shape(
        {
            "batch_id": _BATCH,
            "status": "completed",
            "webhook_id": _WEBHOOK,
            "counter_id": 123456,
            "created_at": _AT,
            "updated_at": _LATER,
            "metrika_upload_id": "987654",
            "total": 2,
            "processed": 2,
            "errors": None,
            "next_attempt_at": None,
            "attempts": 1,
            "last_error": None,
        }
    )

    batch_id: uuid.UUID
    status: str = Field(description="accepted, pending, uploaded, processing, then completed or error")
    webhook_id: uuid.UUID | None
    counter_id: int
    created_at: dt.datetime
    updated_at: dt.datetime
    metrika_upload_id: str | None
    total: int
    processed: int
    errors: list[BatchProblem] | None
    next_attempt_at: dt.datetime | None
    attempts: int
    last_error: str | None
    notification: Notification | None = _NOTIFICATION


class ReplayDone(BaseModel):
    """202: a batch per kept request, uploaded as any batch is."""

    model_config = _shape({"dry_run": False, "requests": 1, "batch_ids": [_BATCH]})

    dry_run: Literal[False]
    requests: int
    batch_ids: list[uuid.UUID]


class IgnoredReason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str
    events: int


class ReplayPreview(BaseModel):
    """200 for `dry_run`: what the mapping as it is now makes of the kept requests."""

    model_config = _shape(
        {
            "dry_run": True,
            "requests": 3,
            "events": 3,
            "conversions": 2,
            "ignored": 1,
            "need_lookup": 0,
            "ignored_reasons": [{"reason": "status 143 has no target in the mapping", "events": 1}],
        }
    )

    dry_run: Literal[True]
    requests: int
    events: int
    conversions: int
    ignored: int
    need_lookup: int
    ignored_reasons: list[IgnoredReason]


# listings (gateway/pages.py: a page of `data` and its `pagination`, newest first)

_PAGE_OF_ONE = {"total": 1, "limit": 100, "offset": 0, "has_more": False}


class TaskItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: uuid.UUID
    counter: int
    date: dt.date = Field(description="The day scored")
    status: Literal["pending", "running", "completed", "failed"]
    progress: int
    message: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    total_visits: int | None
    level4_visits: int | None
    error: str | None
    kind: Literal["day", "backfill"]
    date_to: dt.date | None = Field(description="A backfill's last day")
    parent_id: uuid.UUID | None = Field(description="A backfill's day: its parent")
    run: int | None = Field(description="A day task's run (null for a backfill)")
    rescore_of: uuid.UUID | None = Field(description="A re-score: the day's first task")


class TaskList(BaseModel):
    """A page of tasks, newest first."""

    model_config = _shape(
        {
            "data": [
                {
                    "task_id": _TASK,
                    "counter": 123456,
                    "date": "2025-07-01",
                    "status": "completed",
                    "progress": 100,
                    "message": "31 level-4+ visits of 1204",
                    "created_at": _AT,
                    "started_at": _AT,
                    "finished_at": _LATER,
                    "total_visits": 1204,
                    "level4_visits": 31,
                    "error": None,
                    "kind": "day",
                    "date_to": None,
                    "parent_id": None,
                    "run": 1,
                    "rescore_of": None,
                }
            ],
            "pagination": _PAGE_OF_ONE,
        }
    )

    data: list[TaskItem]
    pagination: Pagination


class ScoreHistogram(BaseModel):
    model_config = ConfigDict(extra="forbid")

    edges: list[float] = Field(min_length=11, max_length=11, description="0, 0.1, ..., 1")
    counts: list[int] = Field(min_length=10, max_length=10, description="Level-4+ visits per score tenth")


class ByDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    desktop: int
    mobile: int
    unknown: int = Field(description="Visits stored before the device class was kept")


class TaskSummary(BaseModel):
    """A completed task's level-4+ visits for charts."""

    model_config = _shape(
        {
            "task_id": _TASK,
            "total_visits": 1204,
            "level4_visits": 31,
            "by_hour": [0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 2, 3, 4, 2, 1, 2, 3, 2, 2, 1, 1, 1, 1, 0],
            "score_histogram": {
                "edges": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                "counts": [0, 0, 0, 0, 0, 0, 0, 4, 11, 16],
            },
            "by_device": {"desktop": 19, "mobile": 12, "unknown": 0},
        }
    )

    task_id: uuid.UUID
    total_visits: int | None
    level4_visits: int
    by_hour: list[int] = Field(
        min_length=24, max_length=24, description="Level-4+ visits by hour of visit start (0..23)"
    )
    score_histogram: ScoreHistogram
    by_device: ByDevice


class UploadItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upload_id: uuid.UUID
    task_id: uuid.UUID | None = Field(description="The task of a bulk upload; null for a single one")
    counter: int
    target: str | None = Field(description="The goal of its first row")
    status: str = Field(description=_STATUS_WORDS)
    total: int
    processed: int
    created_at: dt.datetime
    finished_at: dt.datetime | None = Field(description="Its last change, once processed or error")


class UploadList(BaseModel):
    """A page of uploads (bulk and single), newest first."""

    model_config = _shape(
        {
            "data": [
                {
                    "upload_id": _UPLOAD,
                    "task_id": _TASK,
                    "counter": 123456,
                    "target": "4plus",
                    "status": "processed",
                    "total": 31,
                    "processed": 31,
                    "created_at": _AT,
                    "finished_at": _LATER,
                }
            ],
            "pagination": _PAGE_OF_ONE,
        }
    )

    data: list[UploadItem]
    pagination: Pagination


class WebhookBatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: uuid.UUID
    webhook_id: uuid.UUID
    status: str = Field(description="accepted, pending, uploaded, processing, then completed or error")
    total: int
    processed: int
    received_at: dt.datetime
    finished_at: dt.datetime | None = Field(description="Its last change, once completed or error")


class WebhookBatchList(BaseModel):
    """A page of a webhook's batches, newest first."""

    model_config = _shape(
        {
            "data": [
                {
                    "batch_id": _BATCH,
                    "webhook_id": _WEBHOOK,
                    "status": "completed",
                    "total": 2,
                    "processed": 2,
                    "received_at": _AT,
                    "finished_at": _LATER,
                }
            ],
            "pagination": _PAGE_OF_ONE,
        }
    )

    data: list[WebhookBatchItem]
    pagination: Pagination


class _FoundRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    row: int = Field(description="The row's position in its request, from 0")
    client_id: str | None = Field(description="A row keeps one identifier: client_id, user_id or yclid")
    user_id: str | None
    yclid: str | None
    purchase_id: str | None
    crm_id: str | None = Field(description="A CRM webhook row's lead or deal id (its purchase_id)")
    target: str | None
    status: Literal["pending", "uploaded", "completed", "error", "duplicate", "ignored"]
    error: str | None = Field(description="Why the row failed or was ignored")
    created_at: dt.datetime = Field(description="When its upload or batch was received")


class FoundUploadRow(_FoundRow):
    kind: Literal["upload"]
    upload_id: uuid.UUID
    webhook_id: None


class FoundBatchRow(_FoundRow):
    kind: Literal["webhook_batch"]
    batch_id: uuid.UUID
    webhook_id: uuid.UUID | None = Field(description="null once the webhook was deleted")


class SearchResults(BaseModel):
    """A page of conversion rows of uploads and webhook batches, newest first."""

    model_config = _shape(
        {
            "data": [
                {
                    "kind": "webhook_batch",
                    "batch_id": _BATCH,
                    "webhook_id": _WEBHOOK,
                    "row": 0,
                    "client_id": "175085690441127503",
                    "user_id": None,
                    "yclid": None,
                    "purchase_id": "order123",
                    "crm_id": None,
                    "target": "purchase",
                    "status": "completed",
                    "error": None,
                    "created_at": _AT,
                }
            ],
            "pagination": _PAGE_OF_ONE,
        }
    )

    data: list[FoundUploadRow | FoundBatchRow]
    pagination: Pagination


# schedules (gateway/schedules.py)

_SCHEDULE = "0b9d2c6e-3f41-4a5e-8f7b-2c1d0e9a8b7c"
_RUN_EXAMPLE: dict[str, Any] = {
    "date": "2026-11-25",
    "kind": "score",
    "task_id": _TASK,
    "status": "uploaded",
    "upload_id": _UPLOAD,
    "upload_status": "processed",
    "note": None,
    "created_at": "2026-11-26T00:00:04.512001+00:00",
}
_SCHEDULE_EXAMPLE: dict[str, Any] = {
    "schedule_id": _SCHEDULE,
    "counter": 123456,
    "time": "03:00",
    "timezone": "Europe/Moscow",
    "upload": {"target": "level4"},
    "paused": False,
    "callback_url": None,
    "created_at": _AT,
    "updated_at": _AT,
    "next_run_at": "2026-11-27T00:00:00.000000+00:00",
    "last_run": _RUN_EXAMPLE,
}


class ScheduleRun(BaseModel):
    """One run of a schedule: a day scored ("score") or re-scored at D+3 ("rescore")."""

    model_config = _shape(_RUN_EXAMPLE)

    date: dt.date = Field(description="The day scored (counter-local)")
    kind: Literal["score", "rescore"]
    task_id: uuid.UUID = Field(description="The scoring task (GET /tasks/{task_id}/status)")
    status: Literal["scoring", "completed", "uploaded", "failed"] = Field(
        description="scoring (its task is pending or running), completed (scored; uploaded nothing), "
        "uploaded (its upload was created: upload_id), failed (its task failed: note)"
    )
    upload_id: uuid.UUID | None = Field(description="The upload made of it (GET /conversions/{id}/status)")
    upload_status: Literal["accepted", "pending", "uploaded", "processing", "processed", "error"] | None = (
        Field(
            description="That upload's status now (processed: Metrika has every row; error: see its status)"
        )
    )
    note: str | None = Field(description="Why it failed, or what its upload holds")
    created_at: dt.datetime


class ScheduleUploadTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str


class Schedule(BaseModel):
    """A schedule, never with its token."""

    model_config = _shape(_SCHEDULE_EXAMPLE)

    schedule_id: uuid.UUID
    counter: int
    time: str = Field(description='The time of day runs start at, counter-local ("HH:MM")')
    timezone: str = Field(description="The counter's time zone (IANA name)")
    upload: ScheduleUploadTarget | None
    paused: bool
    callback_url: str | None = Field(description="Where each run's task (and upload) summary is POSTed")
    created_at: dt.datetime
    updated_at: dt.datetime
    next_run_at: dt.datetime | None = Field(
        description="When the next day's run is due (null while paused; past: it is being caught up)"
    )
    last_run: ScheduleRun | None


class ScheduleWithRuns(Schedule):
    model_config = _shape({**_SCHEDULE_EXAMPLE, "runs": [_RUN_EXAMPLE]})

    runs: list[ScheduleRun] = Field(description="The latest runs, latest day first")


class ScheduleList(BaseModel):
    model_config = _shape({"data": [_SCHEDULE_EXAMPLE], "pagination": _PAGE_OF_ONE})

    data: list[Schedule]
    pagination: Pagination


class ScheduleRuns(BaseModel):
    model_config = _shape({"data": [_RUN_EXAMPLE], "pagination": _PAGE_OF_ONE})

    data: list[ScheduleRun]
    pagination: Pagination
