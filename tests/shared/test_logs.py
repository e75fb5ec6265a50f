"""LOG_FORMAT of a real process: json is one JSON object per line, with the bound ids; text stays text."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from shared import logs

SCRIPT = """
import logging
from shared import logs
logs.setup_logging()
log = logging.getLogger("demo")
log.info("plain line")
with logs.bind(request_id="req-1", task_id="t-1"):
    log.warning("inside %s", "a request")
    logs.add(batch_id="b-1")
    try:
        raise ValueError("boom\\nsecond line")
    except ValueError:
        log.exception("failed")
log.info("after")
"""


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_json_logs_are_one_object_per_line_with_the_bound_ids():
    run = _run(LOG_FORMAT="json")
    assert run.returncode == 0, run.stderr
    entries = [json.loads(line) for line in run.stderr.splitlines()]
    assert [e["message"] for e in entries] == ["plain line", "inside a request", "failed", "after"]
    assert all({"time", "level", "logger"} <= set(e) for e in entries)
    assert entries[0]["level"] == "INFO" and entries[0]["logger"] == "demo" and "request_id" not in entries[0]
    assert entries[1]["request_id"] == "req-1" and entries[1]["task_id"] == "t-1"
    assert "batch_id" not in entries[1]
    assert entries[2]["batch_id"] == "b-1" and "ValueError: boom" in entries[2]["exception"]
    assert "request_id" not in entries[3] and "batch_id" not in entries[3]  # the block's end unbinds all
    assert entries[1]["time"].endswith("+00:00")


def test_text_logs_carry_the_ids_on_the_message_line():
    run = _run(LOG_FORMAT="text")
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines[0].endswith("INFO demo: plain line")
    assert lines[1].endswith("WARNING demo: inside a request request_id=req-1 task_id=t-1")
    assert lines[2].endswith("failed request_id=req-1 task_id=t-1 batch_id=b-1")
    assert lines[3] == "Traceback (most recent call last):"


def test_an_unknown_log_format_stops_the_process_with_a_clear_message():
    run = _run(LOG_FORMAT="yaml")
    assert run.returncode == 1 and "LOG_FORMAT must be text or json" in run.stderr


def test_request_ids_from_clients_are_kept_only_when_harmless():
    assert logs.request_id("abc-123.x:y@z") == "abc-123.x:y@z"
    for bad in ("", None, "has space", "a\nb", "x" * 129, "ünïcode"):
        made = logs.request_id(bad)
        assert made != bad and len(made) == 32


def test_message_headers_name_the_requests_once_each():
    assert logs.message_headers([]) == {}
    assert logs.message_headers() == {}  # outside a request
    with logs.bind(request_id="r1"):
        assert logs.message_headers() == {"x-request-id": "r1"}
    headers = logs.message_headers(["a", None, "b", "a"])
    assert headers == {"x-request-id": "a,b"}
    assert logs.headers_request_id(headers) == "a,b"
    assert logs.headers_request_id({"x-request-id": b"c"}) == "c"
    assert logs.headers_request_id(None) is None
