from __future__ import annotations

from aiohttp import web

from gateway.app import create_app
from shared.logs import setup_logging
from shared.loop import new_event_loop
from shared.settings import Settings


def main() -> None:
    setup_logging()
    settings = Settings()
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,
        loop=new_event_loop(),
    )


if __name__ == "__main__":
    main()
