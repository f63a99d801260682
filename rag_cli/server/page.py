"""The page ``rag serve`` serves at ``/``: ask, search and read the sources in a browser (server/web/).

Plain HTML, CSS and JavaScript in the package: no build step, no CDN, nothing fetched from the network,
so it works on an air-gapped machine. The page and its two files are public (they hold no data); every
call the page makes goes to the token-guarded routes with the bearer token the user types in once (kept in
the tab's session storage, never in a URL). A strict Content-Security-Policy allows scripts, styles and
connections to this server only and no inline script; document text is inserted as text, never as HTML.
"""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

FILES = {
    "/": ("index.html", "text/html"),
    "/ui/app.js": ("app.js", "text/javascript"),
    "/ui/app.css": ("app.css", "text/css"),
}
PUBLIC = frozenset([*FILES, "/favicon.ico"])  # no token needed: the token prompt itself lives here

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@functools.cache  # read once a process: the files do not change under a running server
def _body(name: str) -> bytes:
    return resources.files(__package__).joinpath("web", name).read_bytes()


async def page_route(request: web.Request) -> web.Response:
    name, kind = FILES[request.path]
    return web.Response(body=_body(name), content_type=kind, charset="utf-8", headers=HEADERS)


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=HEADERS)


def add_routes(app: web.Application) -> None:
    for path in FILES:
        app.router.add_get(path, page_route)
    app.router.add_get("/favicon.ico", no_icon)
