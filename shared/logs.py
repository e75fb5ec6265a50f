"""Logging: set-up (text or one JSON object per line), and the correlation fields every line carries.

The gateway binds a request id to each request; it travels in the header REQUEST_ID_HEADER of the
messages the request publishes (through the outbox), and the consumer loop binds it again, with the
message's task or batch ids, while it handles the message. Every log line written meanwhile carries them.
Values bound here must never be secrets: they are written as they are.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

# the message header carrying the id(s) of the request(s) whose work the message announces
REQUEST_ID_HEADER = "x-request-id"
# a request id taken from a client (X-Request-ID) is used only if it looks like one: never a log injection
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
# a message announcing the work of several requests (webhook submissions stored together) names them all
MAX_REQUEST_IDS = 64

_NONE: Mapping[str, str] = MappingProxyType({})
_fields: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("log_fields", default=_NONE)


@contextmanager
def bind(**fields: object) -> Iterator[None]:
    """Add `fields` (None values skipped) to every log line written inside the block, in this task and
    the tasks it creates."""
    token = _fields.set({**_fields.get(), **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _fields.reset(token)


def add(**fields: object) -> None:
    """Add `fields` to the lines of the enclosing `bind` block from here on (its end removes them too)."""
    _fields.set({**_fields.get(), **{k: str(v) for k, v in fields.items() if v is not None}})


def bound() -> Mapping[str, str]:
    return _fields.get()


def request_id(given: str | None = None) -> str:
    """`given` if it is a usable request id, else a new one."""
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()


def message_headers(request_ids: list[str | None] | None = None) -> dict[str, Any]:
    """The headers of a message published on behalf of `request_ids` (default: the request bound now);
    empty outside a request."""
    ids = request_ids if request_ids is not None else [bound().get("request_id")]
    unique = list(dict.fromkeys(i for i in ids if i))[:MAX_REQUEST_IDS]
    return {REQUEST_ID_HEADER: ",".join(unique)} if unique else {}


def headers_request_id(headers: Mapping[str, Any] | None) -> str | None:
    """The request id(s) a message's headers carry, if any."""
    value = (headers or {}).get(REQUEST_ID_HEADER)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value[:4096] if isinstance(value, str) and value else None


class Formatter(logging.Formatter):
    """Text (`time LEVEL logger: message key=value ...`) or, with `json=True`, one JSON object per line:
    time, level, logger, message, the bound fields, and `exception` (the traceback) if there is one."""

    def __init__(self, *, json: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._json = json

    def format(self, record: logging.LogRecord) -> str:
        fields = bound()
        if not self._json:
            text = super().format(record)
            if not fields:
                return text
            head, sep, rest = text.partition("\n")  # the fields go on the message's line, not the traceback's
            return head + "".join(f" {k}={v}" for k, v in fields.items()) + sep + rest
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **fields,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Log to stderr at `level` (default env LOG_LEVEL, INFO) as `fmt`: "text" or "json" (default env
    LOG_FORMAT, text)."""
    fmt = (fmt or os.environ.get("LOG_FORMAT", "text")).strip().lower()
    if fmt not in ("text", "json"):
        raise SystemExit(f"error: LOG_FORMAT must be text or json, not {fmt!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(Formatter(json=fmt == "json"))
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(), handlers=[handler], force=True
    )
    # aiormq/aio-pika log every reconnect attempt at WARNING with a traceback; keep the services readable
    logging.getLogger("aiormq").setLevel(logging.ERROR)
    logging.getLogger("aio_pika").setLevel(logging.ERROR)
