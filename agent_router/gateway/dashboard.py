"""The live cost dashboard: one self-contained page (inline CSS, JS and SVG; no CDN, works offline) that polls
the management API every few seconds. Behind keys, open it as `/#key=ADMIN_KEY` (kept in the browser)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

PAGE = resources.files(__package__).joinpath("dashboard.html").read_bytes()
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'",
    "Cache-Control": "no-cache",
}


async def page(request: web.Request) -> web.Response:
    return web.Response(body=PAGE, content_type="text/html", charset="utf-8", headers=HEADERS)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", page)
    app.router.add_get("/dashboard", page)
