"""The baseline of bench/ingest.py: a bare aiohttp endpoint that parses the JSON body and answers."""

from __future__ import annotations

import sys

from aiohttp import web

from shared.loop import new_event_loop


async def accept(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"status": "accepted", "accepted_count": len(body["conversions"])})


if __name__ == "__main__":
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post("/webhook/{webhook_id}", accept)
    # the gateway's event loop, so that the two differ only in what the handler does
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, loop=new_event_loop()
    )
