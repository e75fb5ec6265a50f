"""``python -m sandbox``: serve the Yandex Metrika API emulator."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from datetime import date

from aiohttp import web

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.counters import parse_zones

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, SandboxConfig]:
    defaults = SandboxConfig()
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8081")))
    parser.add_argument("--token", action="append", help="accepted OAuth token (repeatable)")
    parser.add_argument("--max-parallel", type=int, default=defaults.max_parallel)
    parser.add_argument("--rps", type=int, default=defaults.rps, help="Logs API requests per second per IP")
    parser.add_argument(
        "--management-rps",
        type=int,
        default=defaults.management_rps,
        help="other Management API requests per second per IP",
    )
    parser.add_argument("--processing-seconds", type=float, default=defaults.processing_seconds)
    parser.add_argument("--rows-per-part", type=int, default=defaults.rows_per_part)
    parser.add_argument("--visits-per-day", type=int, default=defaults.visits_per_day)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--storage-limit-bytes", type=int, default=defaults.storage_limit_bytes)
    parser.add_argument(
        "--conversion-processing-seconds", type=float, default=defaults.conversion_processing_seconds
    )
    parser.add_argument(
        "--goal",
        action="append",
        help="identifier of a default action goal (repeatable; replaces the defaults)",
    )
    parser.add_argument(
        "--unknown-visitor-id",
        action="append",
        default=[],
        help="UserId/Yclid/PurchaseId that never links (repeatable)",
    )
    parser.add_argument("--max-upload-bytes", type=int, default=defaults.max_upload_bytes)
    parser.add_argument(
        "--bitrix-webhook-code",
        action="append",
        help="accepted Bitrix24 inbound-webhook code (repeatable; replaces the default)",
    )
    parser.add_argument(
        "--bitrix-rps",
        type=float,
        default=defaults.bitrix_rps,
        help="Bitrix24 requests/s per portal",
    )
    parser.add_argument(
        "--bitrix-burst", type=int, default=defaults.bitrix_burst, help="Bitrix24 requests in a burst"
    )
    parser.add_argument(
        "--counter-timezone",
        action="append",
        default=[],
        metavar="COUNTER=ZONE",
        help="a counter's time zone, e.g. 54000001=Asia/Novosibirsk (repeatable; also"
        " SANDBOX_COUNTER_TIMEZONES, comma-separated)",
    )
    parser.add_argument("--today", type=date.fromisoformat, default=None, help="pretend today is YYYY-MM-DD")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        zones = parse_zones(
            ",".join([os.environ.get("SANDBOX_COUNTER_TIMEZONES", ""), *args.counter_timezone])
        )
    except ValueError as exc:
        parser.error(f"--counter-timezone: {exc}")
    config = SandboxConfig(
        tokens=frozenset(args.token) if args.token else defaults.tokens,
        max_parallel=args.max_parallel,
        rps=args.rps,
        management_rps=args.management_rps,
        processing_seconds=args.processing_seconds,
        rows_per_part=args.rows_per_part,
        visits_per_day=args.visits_per_day,
        seed=args.seed,
        storage_limit_bytes=args.storage_limit_bytes,
        today=args.today,
        conversion_processing_seconds=args.conversion_processing_seconds,
        default_goals=tuple(args.goal) if args.goal else defaults.default_goals,
        unknown_visitor_ids=frozenset(args.unknown_visitor_id),
        max_upload_bytes=args.max_upload_bytes,
        bitrix_webhook_codes=(
            frozenset(args.bitrix_webhook_code) if args.bitrix_webhook_code else defaults.bitrix_webhook_codes
        ),
        bitrix_rps=args.bitrix_rps,
        bitrix_burst=args.bitrix_burst,
        counter_zones=zones,
    )
    return args, config


def main(argv: Sequence[str] | None = None) -> None:
    args, config = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.info("sandbox on http://%s:%s (%d tokens accepted)", args.host, args.port, len(config.tokens))
    web.run_app(create_app(config), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
