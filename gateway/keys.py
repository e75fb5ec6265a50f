"""Typed keys of the gateway's application state."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from gateway.intake import Intake
from gateway.limits import AuthFailures
from gateway.webhook_guard import WebhookGuard
from shared.counter_zones import CounterZones
from shared.crypto import TokenCipher
from shared.metrics import State
from shared.relay import OutboxRelay
from shared.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
# commits without waiting for the WAL flush: rate counters and "published" marks only (see db.create_pool)
PG_LOSSY_POOL = web.AppKey("pg_lossy_pool", asyncpg.Pool)
RELAY = web.AppKey("relay", OutboxRelay)
CIPHER = web.AppKey("cipher", TokenCipher)
INTAKE = web.AppKey("intake", Intake)
WEBHOOK_GUARD = web.AppKey("webhook_guard", WebhookGuard)
AUTH_FAILURES = web.AppKey("auth_failures", AuthFailures)
METRICS_STATE = web.AppKey("metrics_state", State)
# counters' time zones (the Management API, kept in Postgres); its own HTTP session
ZONES = web.AppKey("zones", CounterZones)
# of a request: its id (gateway.monitoring)
REQUEST_ID = web.RequestKey("request_id", str)
API_KEYS = web.AppKey("api_keys", frozenset[bytes])  # the configured keys, as bytes
