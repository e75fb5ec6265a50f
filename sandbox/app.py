"""The sandbox application: an emulator of Yandex Metrika's APIs for tests and local runs.

Composition: shared middlewares (request log -> error envelope -> Bitrix24 envelope under /rest/ ->
auth -> quotas -> faults), the ``/sandbox/*`` control API, and one module per emulated API:
``sandbox.counters`` (counters and their time zones), ``sandbox.logs_api``, ``sandbox.conversions``
(offline conversions + goals) and ``sandbox.bitrix24`` (Bitrix24 REST, for CRM enrichment).
"""

from __future__ import annotations

import logging

from aiohttp import web

from sandbox.auth import auth_middleware
from sandbox.bitrix24 import BITRIX, bitrix_envelope_middleware, setup_bitrix24
from sandbox.config import SandboxConfig
from sandbox.control import FAULTS, REQUEST_LOG
from sandbox.control import routes as control_routes
from sandbox.conversions import CONVERSIONS, GOALS, UPLOADINGS, VISITORS, setup_conversions
from sandbox.counters import COUNTERS, Counters
from sandbox.counters import routes as counter_routes
from sandbox.errors import errors_middleware
from sandbox.faults import Faults, faults_middleware
from sandbox.logs_api import DAYS, LOG_REQUESTS, setup_logs_api
from sandbox.quotas import Quotas, quotas_middleware
from sandbox.request_log import RequestLog, request_log_middleware

__all__ = [
    "BITRIX",
    "CONFIG",
    "CONVERSIONS",
    "COUNTERS",
    "DAYS",
    "FAULTS",
    "GOALS",
    "LOG_REQUESTS",
    "QUOTAS",
    "REQUEST_LOG",
    "UPLOADINGS",
    "VISITORS",
    "SandboxConfig",
    "create_app",
]

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", SandboxConfig)
QUOTAS = web.AppKey("quotas", Quotas)


def create_app(config: SandboxConfig | None = None) -> web.Application:
    config = config or SandboxConfig()
    faults = Faults()
    request_log = RequestLog()
    quotas = Quotas(rps=config.rps, max_parallel=config.max_parallel, management_rps=config.management_rps)
    app = web.Application(
        middlewares=[
            request_log_middleware(request_log),
            errors_middleware,
            bitrix_envelope_middleware,
            auth_middleware(config.tokens),
            quotas_middleware(quotas),
            faults_middleware(faults),
        ]
    )
    app[CONFIG] = config
    app[FAULTS] = faults
    app[REQUEST_LOG] = request_log
    app[QUOTAS] = quotas
    app[COUNTERS] = Counters(config.counter_zones)
    app.router.add_routes(control_routes)
    app.router.add_routes(counter_routes)
    setup_logs_api(app, config, faults, app[COUNTERS])
    setup_conversions(app, config, faults, app[DAYS], app[COUNTERS])
    setup_bitrix24(app, config)
    return app
