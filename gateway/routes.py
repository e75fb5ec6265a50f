"""Every endpoint of the gateway, one line each."""

from __future__ import annotations

from aiohttp import web

from gateway import health, tasks


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/health", health.health)
    app.router.add_post("/tasks", tasks.create_task)
    app.router.add_get("/tasks/{task_id}/status", tasks.task_status)
    app.router.add_get("/tasks/{task_id}/result", tasks.task_result)
