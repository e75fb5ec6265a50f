"""Monitoring on real parts: the gateway's and a consumer's /metrics move as work is sent, and a request's
id reaches the consumer's JSON log lines through the outbox and RabbitMQ."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import uuid

import aiohttp
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gateway import keys
from sandbox.app import VISITORS
from scorer.main import main as scorer_main
from shared import broker, logs
from tests.conftest import override, wait_for
from tests.faults.procs import free_port
from uploader.main import main as uploader_main

COUNTER = 6262
YESTERDAY = (dt.date.today() - dt.timedelta(days=1)).isoformat()
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _scrape(client, url: str = "/metrics", **kwargs):
    resp = await client.get(url, **kwargs)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain")
    return _samples(await resp.text())


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _webhook(gateway):
    resp = await gateway.post(
        "/webhook/offline-conversions", json={"name": "CRM", "counter_id": COUNTER, "token": "sandbox-token"}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _submit(gateway, hook, rows, request_id: str | None = None):
    headers = {"X-Webhook-Secret": hook["secret"], "Authorization": ""}
    if request_id:
        headers["X-Request-ID"] = request_id
    resp = await gateway.post(
        f"/webhook/offline-conversions/{hook['webhook_id']}", json={"conversions": rows}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    return resp, (await resp.json())["batch_id"]


def _row(i: int) -> dict[str, object]:
    return {
        "client_id": str(10**18 + i),
        "target": "purchase",
        "date_time": (NOW - dt.timedelta(hours=1)).isoformat(),
        "price": 10 + i,
        "currency": "RUB",
    }


async def test_gateway_metrics_move_as_work_is_sent(gateway, settings):
    before = await _scrape(gateway)
    http = "metrika_score_http_requests_total"

    resp = await gateway.post("/tasks", json={"date": YESTERDAY, "token": "t", "counter": 5})
    assert resp.status == 200
    resp = await gateway.get(f"/tasks/{uuid.uuid4()}/status")
    assert resp.status == 404
    hook = await _webhook(gateway)
    _, batch_id = await _submit(gateway, hook, [_row(0), _row(1)])

    after = await _scrape(gateway)
    route = {"method": "POST", "route": "/tasks", "status": "200"}
    assert _value(after, http, **route) == _value(before, http, **route) + 1
    missing = {"method": "GET", "route": "/tasks/{task_id}/status", "status": "404"}
    assert _value(after, http, **missing) == _value(before, http, **missing) + 1
    # the route's template, never the path with its ids or the webhook's secret
    submit = {"method": "POST", "route": "/webhook/offline-conversions/{webhook_id}", "status": "200"}
    assert _value(after, http, **submit) == _value(before, http, **submit) + 1
    assert not any(hook["webhook_id"] in dict(labels).get("route", "") for _, labels in after)
    count = "metrika_score_http_request_duration_seconds_count"
    assert _value(after, count, **route) == _value(before, count, **route) + 1

    # the state, read as the scrape came: one task waiting, its message queued, the batch's rows
    assert _value(after, "metrika_score_tasks", status="pending") == 1
    assert _value(after, "metrika_score_conversions", status="pending") == 2
    assert _value(after, "metrika_score_state_up", source="postgres") == 1
    assert ("metrika_score_outbox_backlog", frozenset()) in after
    topology = broker.Topology(settings.queue_prefix)

    async def queued():
        samples = await _scrape(gateway)
        return _value(samples, "metrika_score_queue_messages", queue=topology.queue(broker.SCORE_TASKS)) == 1

    await wait_for(queued, timeout=10, what="the task's message counted in its queue")
    samples = await _scrape(gateway)
    assert _value(samples, "metrika_score_queue_messages", queue=topology.dead_queue(broker.SCORE_TASKS)) == 0
    assert _value(samples, "metrika_score_state_up", source="rabbitmq") == 1
    assert _value(samples, "metrika_score_outbox_backlog") == 0
    assert batch_id


async def test_unmatched_paths_are_one_label_and_every_answer_names_its_request(gateway):
    before = await _scrape(gateway)
    resp = await gateway.get("/no/such/path/secret-looking-123")
    assert resp.status == 404
    assert len(resp.headers["X-Request-ID"]) == 32
    after = await _scrape(gateway)
    labels = {"method": "GET", "route": "unmatched", "status": "404"}
    name = "metrika_score_http_requests_total"
    assert _value(after, name, **labels) == _value(before, name, **labels) + 1
    assert not any("secret-looking" in str(labels) for _, labels in after)

    resp = await gateway.get("/health", headers={"X-Request-ID": "client-id.42"})
    assert resp.headers["X-Request-ID"] == "client-id.42"
    resp = await gateway.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert resp.headers["X-Request-ID"] != "bad id\twith spaces" and len(resp.headers["X-Request-ID"]) == 32
    resp = await gateway.post("/tasks", json={"date": "yesterday"})  # an error answer names it too
    assert resp.status == 422 and len(resp.headers["X-Request-ID"]) == 32


async def test_metrics_token_is_asked_for_when_set(settings, aiohttp_client):
    from gateway.app import create_app

    app = create_app(override(settings, metrics_token="scrape-me"))
    client = await aiohttp_client(app)
    assert (await client.get("/metrics")).status == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer test-api-key"})
    assert wrong.status == 401
    resp = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert resp.status == 200 and "metrika_score_http_requests_total" in await resp.text()
    assert app[keys.SETTINGS].metrics_token is not None


class _Lines(logging.Handler):
    """Log records as the JSON lines a service with LOG_FORMAT=json writes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logs.Formatter(json=True))
        self.stream = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write(self.format(record) + "\n")

    def entries(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


async def test_consumer_metrics_move_and_its_logs_carry_the_request_id(
    gateway, settings, sandbox, run_service, http
):
    port = free_port()
    queue = broker.Topology(settings.queue_prefix).queue(broker.CONVERSION_UPLOADS)
    acks = {"queue": queue, "outcome": "ack"}
    before_uploads = REGISTRY.get_sample_value("metrika_score_uploads_total", {"outcome": "uploaded"}) or 0
    calls = {"api": "conversions", "outcome": "ok"}
    before_calls = REGISTRY.get_sample_value("metrika_score_metrika_api_calls_total", calls) or 0

    lines = _Lines()
    watched = [logging.getLogger(name) for name in ("shared", "uploader")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(lines)
        logger.setLevel(logging.DEBUG)
    try:
        hook = await _webhook(gateway)
        sandbox.app[VISITORS].register(COUNTER, [str(10**18)])
        request_id = f"trace-{uuid.uuid4().hex[:8]}"
        resp, batch_id = await _submit(gateway, hook, [_row(0)], request_id)
        assert resp.headers["X-Request-ID"] == request_id
        run_service(uploader_main, override(settings, metrics_port=port))

        async def scraped_ack():
            try:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert resp.status == 200
                    samples = _samples(await resp.text())
            except aiohttp.ClientConnectorError:  # the uploader is still starting
                return None
            return samples if _value(samples, "metrika_score_messages_total", **acks) >= 1 else None

        samples = await wait_for(scraped_ack, timeout=30, what="the uploader's ack counted")

        async def completed():
            status = await gateway.get(
                f"/webhook/offline-conversions/{hook['webhook_id']}/status",
                params={"batch_id": batch_id},
                headers={"X-Webhook-Secret": hook["secret"], "Authorization": ""},
            )
            return (await status.json())["status"] == "completed"

        await wait_for(completed, timeout=30, what="the batch completed")
    finally:
        for logger, level in zip(watched, levels, strict=True):
            logger.removeHandler(lines)
            logger.setLevel(level)

    assert _value(samples, "metrika_score_message_duration_seconds_count", queue=queue) >= 1
    assert _value(samples, "metrika_score_uploads_total", outcome="uploaded") >= before_uploads + 1
    assert _value(samples, "metrika_score_metrika_api_calls_total", **calls) >= before_calls + 1
    assert _value(samples, "metrika_score_messages_in_flight", queue=queue) == 0

    entries = lines.entries()  # every line is one JSON object
    consumer = ("shared.consumer", "uploader")
    ours = [e for e in entries if e.get("request_id") == request_id]
    handled = [e for e in ours if str(e["logger"]).startswith(consumer)]
    assert handled, entries
    assert all(e["batch_id"] == batch_id for e in handled)
    assert any(e["logger"] == "shared.consumer" and e["message"].startswith("message from") for e in handled)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)


async def test_scorer_metrics_count_logs_api_bytes_and_its_logs_carry_task_and_request(
    gateway, settings, run_service, http
):
    port = free_port()
    queue = broker.Topology(settings.queue_prefix).queue(broker.SCORE_TASKS)
    before_bytes = REGISTRY.get_sample_value("metrika_score_logs_api_bytes_total") or 0
    lines = _Lines()
    watched = [logging.getLogger(name) for name in ("shared", "scorer")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(lines)
        logger.setLevel(logging.INFO)
    try:
        day = (dt.date.today() - dt.timedelta(days=2)).isoformat()
        request_id = f"task-{uuid.uuid4().hex[:8]}"
        resp = await gateway.post(
            "/tasks",
            json={"date": day, "token": "sandbox-token", "counter": COUNTER},
            headers={"X-Request-ID": request_id},
        )
        task_id = (await resp.json())["task_id"]
        # polls within the sandbox's 10 Logs API requests per second (as tests/test_scoring_flow.py)
        run_service(scorer_main, override(settings, metrics_port=port, logs_poll_initial_s=0.4))

        async def finished():
            body = await (await gateway.get(f"/tasks/{task_id}/status")).json()
            return body["status"] in ("completed", "failed") and body

        assert (await wait_for(finished, timeout=60, what="the task finished"))["status"] == "completed"

        async def acked():  # the message is acked a moment after the task is marked completed
            async with http.get(f"http://127.0.0.1:{port}/metrics") as metrics_resp:
                samples = _samples(await metrics_resp.text())
            return (
                samples
                if _value(samples, "metrika_score_messages_total", queue=queue, outcome="ack")
                else None
            )

        samples = await wait_for(acked, timeout=10, what="the scorer's ack counted")
    finally:
        for logger, level in zip(watched, levels, strict=True):
            logger.removeHandler(lines)
            logger.setLevel(level)

    assert _value(samples, "metrika_score_messages_total", queue=queue, outcome="ack") == 1
    assert _value(samples, "metrika_score_logs_api_bytes_total") > before_bytes
    assert _value(samples, "metrika_score_logs_api_seconds_count", stage="download") >= 2  # visits, hits
    assert _value(samples, "metrika_score_metrika_api_calls_total", api="logs", outcome="ok") >= 6
    ours = [e for e in lines.entries() if e.get("request_id") == request_id]
    assert any(e["logger"].startswith("scorer") for e in ours), lines.entries()
    assert all(e["task_id"] == task_id for e in ours)
