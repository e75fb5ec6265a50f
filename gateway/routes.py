"""Every endpoint of the gateway, one line each."""

from __future__ import annotations

from aiohttp import web

from gateway import (
    conversions,
    crm_replay,
    dead_letters,
    endpoints,
    health,
    listings,
    monitoring,
    openapi,
    retries,
    schedules,
    search,
    tasks,
    ui,
    webhooks,
)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/health", health.health)
    app.router.add_get("/metrics", monitoring.metrics_endpoint)
    app.router.add_get("/ui", ui.redirect)
    app.router.add_get("/ui/", ui.asset)
    app.router.add_get("/ui/{name}", ui.asset)
    app.router.add_post("/tasks", tasks.create_task)
    app.router.add_get("/tasks", tasks.list_tasks)
    app.router.add_get("/tasks/{task_id}/status", tasks.task_status)
    app.router.add_get("/tasks/{task_id}/result", tasks.task_result)
    app.router.add_get("/tasks/{task_id}/summary", tasks.task_summary)
    app.router.add_post("/tasks/{task_id}/retry", tasks.retry_task)
    app.router.add_post("/tasks/{task_id}/rescore", tasks.rescore_task)
    app.router.add_get("/tasks/{task_id}/conversions", conversions.task_conversions)
    app.router.add_post("/schedules", schedules.create_schedule)
    app.router.add_get("/schedules", schedules.list_schedules)
    app.router.add_get("/schedules/{schedule_id}", schedules.get_schedule)
    app.router.add_patch("/schedules/{schedule_id}", schedules.update_schedule)
    app.router.add_delete("/schedules/{schedule_id}", schedules.delete_schedule)
    app.router.add_post("/schedules/{schedule_id}/pause", schedules.pause_schedule)
    app.router.add_post("/schedules/{schedule_id}/resume", schedules.resume_schedule)
    app.router.add_get("/schedules/{schedule_id}/runs", schedules.list_runs)
    app.router.add_get("/conversions", listings.list_uploads)
    app.router.add_post("/conversions/bulk", conversions.create_bulk)
    app.router.add_post("/conversions/single", conversions.create_single)
    app.router.add_get("/conversions/{upload_id}/status", conversions.upload_status)
    app.router.add_post("/conversions/{upload_id}/retry", retries.retry_upload)
    app.router.add_get("/search", search.search)
    app.router.add_get("/dead-letters", dead_letters.list_dead_letters)
    app.router.add_post("/dead-letters/{id}/replay", dead_letters.replay_dead_letter)
    app.router.add_post("/webhook/offline-conversions", webhooks.create_webhook)
    app.router.add_get("/webhook/offline-conversions", webhooks.list_webhooks)
    # submit first: the hottest route is the first one tried for its path (and shares it with PATCH)
    app.router.add_post("/webhook/offline-conversions/{webhook_id}", webhooks.submit)  # the webhook's secret
    app.router.add_patch("/webhook/offline-conversions/{webhook_id}", webhooks.update_webhook)
    app.router.add_delete("/webhook/offline-conversions/{webhook_id}", webhooks.delete_webhook)
    app.router.add_post("/webhook/offline-conversions/{webhook_id}/rotate-secret", webhooks.rotate_secret)
    # the secret as the last path segment (the URL a CRM calls): after every POST /{webhook_id}/<word> route
    app.router.add_post(
        "/webhook/offline-conversions/{webhook_id}/replay", crm_replay.replay
    )  # before {secret}
    app.router.add_post("/webhook/offline-conversions/{webhook_id}/{secret}", webhooks.submit_by_url)
    app.router.add_get("/webhook/offline-conversions/{webhook_id}/status", webhooks.batch_status)  # secret
    app.router.add_get("/webhook/offline-conversions/{webhook_id}/batches", listings.list_webhook_batches)
    app.router.add_get("/webhook/offline-conversions/{webhook_id}/batches/{batch_id}", listings.webhook_batch)
    app.router.add_post(
        "/webhook/offline-conversions/{webhook_id}/batches/{batch_id}/retry", retries.retry_webhook_batch
    )
    # last: /openapi.json describes the routes above (each declared in gateway/endpoints.py)
    openapi.setup(app, endpoints.ENDPOINTS)
