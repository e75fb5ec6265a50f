"""What every route of gateway/routes.py takes and answers, for /openapi.json (gateway/openapi.py says how
to add one); tests/gateway/test_openapi.py fails on a route missing here."""

from __future__ import annotations

from gateway import api_models as m
from gateway import crm_replay, dead_letters, listings, pages, search, tasks, webhooks
from gateway.openapi import Endpoint
from shared import schemas

_WEBHOOK = "/webhook/offline-conversions"
_SUBMIT = (
    "A JSON webhook takes 1 to 1000 conversions (10 MB at most); an invalid row refuses the request (400 "
    "listing every invalid row) unless `?partial=true`, which stores the valid rows and keeps the invalid "
    "ones as failed rows. An amocrm or bitrix24 webhook takes the CRM's form body as it is. "
    "`Idempotency-Key` makes a repeat answer as the first request did."
)

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/health"): Endpoint(
        "Liveness and readiness: 200 while Postgres answers, 503 while it does not",
        "operations",
        {200: m.Health, 503: m.Health},
        auth="public",
    ),
    ("GET", "/metrics"): Endpoint(
        "Prometheus metrics of this gateway (text exposition format)",
        "operations",
        {200: None},
        (401,),
        auth="public",
        description="No API key; with METRICS_TOKEN set, `Authorization: Bearer <METRICS_TOKEN>` is needed.",
        media={200: "text/plain"},
    ),
    ("GET", "/ui"): Endpoint(
        "Redirects to the dashboard, /ui/",
        "operations",
        {302: None},
        auth="public",
    ),
    ("GET", "/ui/"): Endpoint(
        "The dashboard (its page asks for an API key and sends it with each call)",
        "operations",
        {200: None},
        auth="public",
        media={200: "text/html"},
    ),
    ("GET", "/ui/{name}"): Endpoint(
        "A file of the dashboard (gateway/ui/, shipped in the package: no CDN)",
        "operations",
        {200: None},
        (404,),
        auth="public",
        media={200: "application/octet-stream"},
    ),
    ("POST", "/tasks"): Endpoint(
        "Score a day of a counter's visits, or every day of a range (a backfill)",
        "tasks",
        {200: m.TaskCreated},
        (400,),
        body=schemas.TaskCreate,
        description="`date` (one day), or `date_from` and `date_to` (inclusive, at most 365 days, past "
        "days only): a parent task and a task per day. `token` and `counter` default to METRIKA_TOKEN and "
        "METRIKA_COUNTER.",
    ),
    ("GET", "/tasks/{task_id}/status"): Endpoint(
        "A task's status and progress (a backfill: its days' aggregate, and each day)",
        "tasks",
        {200: m.TaskStatus},
        (404,),
        description="A backfill is completed when every day is, failed when every day has ended and one "
        "failed, pending while none has started, running otherwise; its progress is their average.",
    ),
    ("GET", "/tasks/{task_id}/result"): Endpoint(
        "A page of a completed task's level-4+ visits (a backfill: of every completed day)",
        "tasks",
        {200: m.TaskResult},
        (400, 404, 409),
        query=tasks.ResultQuery,
        description="A day serves its latest completed run (`run`: another one; 404 if absent). A "
        "backfill serves its completed days in day order, each visit with its `date` (`date`: one day). "
        "409 while nothing is completed, or when the task failed. `client_id` keeps one visitor's visits "
        "(an exact match).",
    ),
    ("POST", "/tasks/{task_id}/rescore"): Endpoint(
        "Score a day again (late data): its next run, served once it completes",
        "tasks",
        {202: m.TaskRescored},
        (404, 409),
        description="409 for a backfill (re-score its days) and while a run of the day is pending or "
        "running. A failed re-score leaves the earlier completed run served.",
    ),
    ("GET", "/tasks"): Endpoint(
        "Tasks, newest first, by status, counter and the day scored (`date`, or `date_from`..`date_to`)",
        "tasks",
        {200: m.TaskList},
        query=tasks.TaskListQuery,
    ),
    ("GET", "/tasks/{task_id}/summary"): Endpoint(
        "A completed task's level-4+ visits for charts: by hour, by score tenth, by device class",
        "tasks",
        {200: m.TaskSummary},
        (400, 404, 409),
        query=tasks.SummaryQuery,
        description="Of the run the result serves (`run`: another one); a backfill: of its completed days "
        "(`date`: one day). 409 while nothing is completed, or when the task failed.",
    ),
    ("POST", "/tasks/{task_id}/retry"): Endpoint(
        "Run a failed task again from the start (a backfill: each failed day)",
        "tasks",
        {202: m.TaskRetried},
        (404, 409),
    ),
    ("GET", "/tasks/{task_id}/conversions"): Endpoint(
        "Every upload made from a task", "conversions", {200: m.TaskUploads}, (404,)
    ),
    ("POST", "/schedules"): Endpoint(
        "Score a counter's yesterday every day (and upload its level-4+ visits)",
        "schedules",
        {201: m.Schedule},
        (409,),
        body=schemas.ScheduleCreate,
        description="Every day, once `time` (counter-local, default 03:00) has passed, the scheduler scores "
        "the counter's yesterday, once however many replicas run; days missed while it was down are caught "
        "up, oldest first; each day is re-scored once at D+3 (sessions keep changing for about 3 days), "
        "and with `upload` each run's level-4+ visits not sent before are uploaded as ClientId conversions. "
        "One schedule per counter: 409 names the existing one (`schedule_id`).",
    ),
    ("GET", "/schedules"): Endpoint(
        "Schedules, newest first", "schedules", {200: m.ScheduleList}, query=pages.PageQuery
    ),
    ("GET", "/schedules/{schedule_id}"): Endpoint(
        "A schedule and its latest runs", "schedules", {200: m.ScheduleWithRuns}, (404,)
    ),
    ("PATCH", "/schedules/{schedule_id}"): Endpoint(
        "Change a schedule (the fields given)",
        "schedules",
        {200: m.Schedule},
        (404,),
        body=schemas.ScheduleUpdate,
        description="`paused: false` resumes without catching up the days paused; `upload: null` stops "
        "uploading.",
    ),
    ("DELETE", "/schedules/{schedule_id}"): Endpoint(
        "Delete a schedule (its runs made stay: their days are not scored again)",
        "schedules",
        {204: None},
        (404,),
    ),
    ("POST", "/schedules/{schedule_id}/pause"): Endpoint(
        "Pause a schedule: no run until it is resumed", "schedules", {200: m.Schedule}, (404,)
    ),
    ("POST", "/schedules/{schedule_id}/resume"): Endpoint(
        "Resume a schedule from the counter-local yesterday (the days paused are skipped)",
        "schedules",
        {200: m.Schedule},
        (404,),
    ),
    ("GET", "/schedules/{schedule_id}/runs"): Endpoint(
        "A schedule's runs, latest day first",
        "schedules",
        {200: m.ScheduleRuns},
        (404,),
        query=pages.PageQuery,
    ),
    ("GET", "/conversions"): Endpoint(
        "Uploads (bulk and single), newest first, by task and status",
        "conversions",
        {200: m.UploadList},
        query=listings.UploadListQuery,
        description="`status=processed` and `status=completed` both find the finished uploads.",
    ),
    ("GET", "/search"): Endpoint(
        "Conversion rows of uploads and webhook batches, found by an identifier, newest first",
        "conversions",
        {200: m.SearchResults},
        query=search.SearchQuery,
        description="At least one of client_id, user_id, yclid, purchase_id, crm_id (422 otherwise); "
        "several must all match. Ids are compared as their exact text.",
    ),
    ("POST", "/conversions/bulk"): Endpoint(
        "Upload every level-4+ visit of a completed task as a conversion",
        "conversions",
        {200: m.UploadCreated},
        (400, 404, 409),
        body=schemas.ConversionsBulk,
        description="The visits of the run the task serves (a backfill: of every completed day) not "
        "uploaded before for this counter and target (409 when none is left). The uploader makes the "
        "rows when it takes the upload: `total` is 0 until then.",
    ),
    ("POST", "/conversions/single"): Endpoint(
        "Upload one conversion",
        "conversions",
        {200: m.UploadCreated},
        (400, 409),
        body=m.SingleConversion,
        rows=True,
        description="`Idempotency-Key` makes a repeat answer as the first request did (409: the key was "
        "used with another request).",
    ),
    ("GET", "/conversions/{upload_id}/status"): Endpoint(
        "An upload's status, with its failed rows", "conversions", {200: m.UploadStatus}, (404,)
    ),
    ("POST", "/conversions/{upload_id}/retry"): Endpoint(
        "Send again the rows of an upload that failed before Metrika had them",
        "conversions",
        {202: m.UploadRetried},
        (404, 409),
    ),
    ("GET", "/dead-letters"): Endpoint(
        "Messages no consumer could process, newest first",
        "operations",
        {200: m.DeadLetters},
        query=dead_letters.ListQuery,
    ),
    ("POST", "/dead-letters/{id}/replay"): Endpoint(
        "Publish a dead letter again",
        "operations",
        {202: m.DeadLetterReplayed},
        (404, 409, 422),
        path={"id": {"type": "integer", "minimum": 1}},
    ),
    ("POST", _WEBHOOK): Endpoint(
        "Create a webhook (its secret is shown once)",
        "webhooks",
        {200: m.WebhookCreated},
        body=schemas.WebhookCreate,
    ),
    ("GET", _WEBHOOK): Endpoint("Every webhook", "webhooks", {200: m.Webhooks}),
    ("POST", _WEBHOOK + "/{webhook_id}"): Endpoint(
        "Send conversions to a webhook (its secret in X-Webhook-Secret or ?secret=)",
        "webhooks",
        {200: m.BatchAccepted},
        (400, 409),
        body=m.WebhookSubmission,
        query=webhooks.SubmitQuery,
        auth="webhook_secret",
        rows=True,
        description=_SUBMIT,
    ),
    ("PATCH", _WEBHOOK + "/{webhook_id}"): Endpoint(
        "Change a webhook (the fields given)",
        "webhooks",
        {200: m.WebhookUpdated},
        (404,),
        body=schemas.WebhookUpdate,
        description="A token or counter change reaches the webhook's batches not uploaded yet.",
    ),
    ("DELETE", _WEBHOOK + "/{webhook_id}"): Endpoint(
        "Delete a webhook (its batches stay, readable at /conversions/{id}/status)",
        "webhooks",
        {204: None},
        (404,),
    ),
    ("POST", _WEBHOOK + "/{webhook_id}/rotate-secret"): Endpoint(
        "Give a webhook a new secret (the old one stops working)",
        "webhooks",
        {200: m.WebhookCreated},
        (404,),
    ),
    ("POST", _WEBHOOK + "/{webhook_id}/replay"): Endpoint(
        "Run a CRM webhook's kept requests through its mapping again (or preview it with dry_run)",
        "webhooks",
        {200: m.ReplayPreview, 202: m.ReplayDone},
        (404, 409),
        body=crm_replay.ReplayBody,
    ),
    ("POST", _WEBHOOK + "/{webhook_id}/{secret}"): Endpoint(
        "Send conversions to a webhook, the secret as the URL's last segment (the URL a CRM calls)",
        "webhooks",
        {200: m.BatchAccepted},
        (400, 409),
        body=m.WebhookSubmission,
        query=webhooks.SubmitQuery,
        auth="secret_in_path",
        rows=True,
        description=_SUBMIT,
    ),
    ("GET", _WEBHOOK + "/{webhook_id}/status"): Endpoint(
        "A webhook batch's status, with its failed rows (the webhook's secret)",
        "webhooks",
        {200: m.WebhookBatchStatus},
        query=webhooks.StatusQuery,
        auth="webhook_secret",
    ),
    ("GET", _WEBHOOK + "/{webhook_id}/batches"): Endpoint(
        "A webhook's batches, newest first, by status and time received (`since` <= t < `until`)",
        "webhooks",
        {200: m.WebhookBatchList},
        (404,),
        query=listings.BatchListQuery,
        description="A time without an offset is in UTC.",
    ),
    ("GET", _WEBHOOK + "/{webhook_id}/batches/{batch_id}"): Endpoint(
        "A webhook batch's status, with its failed rows (the API key)",
        "webhooks",
        {200: m.WebhookBatchStatus},
        (404,),
    ),
    ("POST", _WEBHOOK + "/{webhook_id}/batches/{batch_id}/retry"): Endpoint(
        "Send again the rows of a webhook batch that failed before Metrika had them",
        "webhooks",
        {202: m.BatchRetried},
        (404, 409),
    ),
    ("GET", "/openapi.json"): Endpoint(
        "This description (OpenAPI 3.1)",
        "operations",
        {200: None},
        auth="public",
        media={200: "application/json"},
    ),
    ("GET", "/docs"): Endpoint(
        "Browsable documentation of this API (Swagger UI)",
        "operations",
        {200: None},
        auth="public",
        media={200: "text/html"},
    ),
    ("GET", "/docs/{file}"): Endpoint(
        "A file of the /docs page (shipped in the package: no CDN)",
        "operations",
        {200: None},
        (404,),
        auth="public",
        media={200: "application/octet-stream"},
    ),
}
