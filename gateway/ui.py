"""The dashboard: a static page and its scripts under /ui/. The files hold no data and need no API key; the
page asks for the key once per browser session and sends it with every API call, as any client does."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.middlewares import public
from shared import errors

UI_DIR = Path(__file__).with_name("ui")
# the files that may be served, read once: a name from the URL is only ever looked up in this set
FILES = frozenset(path.name for path in UI_DIR.iterdir() if path.is_file())
# the page runs only its own scripts and talks only to this gateway: data shown can never run as code
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@public
async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


@public
async def asset(request: web.Request) -> web.FileResponse:
    """GET /ui/ (the page) and GET /ui/{name} (its scripts and styles)."""
    name = request.match_info.get("name") or "index.html"
    if name not in FILES:
        raise errors.NotFound("No such dashboard file")
    return web.FileResponse(UI_DIR / name, headers=HEADERS)
