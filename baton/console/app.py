"""The console's web application: routes, templates, static files, one Redis client.

Read-only by construction: every route is a GET (anything else is 405). Pages are rendered
on the server with autoescaping Jinja2; the only script is ``static/live.js`` (the live
counts) and the Content-Security-Policy allows nothing from elsewhere, inline or remote.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton.console import views
from baton.console.reading import ConsoleReader, local_catalog
from messaging.redis_client import redis_for
from messaging.settings import Settings

REFRESH_MS = 3000  # how often a page asks for the live counts
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """Adds ``HEADERS`` to every response (a page may hold ids and keys: never cached)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in extra if k not in present),
                ]
            await send(message)

        await self._app(scope, receive, with_headers)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def templates() -> Jinja2Templates:
    """Templates from the package, autoescaped whatever the file's extension."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("baton.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    env.globals["refresh_ms"] = REFRESH_MS
    return Jinja2Templates(env=env)


def create_app(settings: Settings) -> Starlette:
    """The console for ``settings``' namespace; the Redis client lives as long as the app."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = redis_for(settings.redis, socket_connect_timeout=5, socket_timeout=30)
        app.state.reader = ConsoleReader(settings, client, local_catalog(settings))
        try:
            yield
        finally:
            await client.aclose()

    app = Starlette(
        routes=[
            Route("/", views.index),
            Route("/sagas/{saga_id}", views.saga),
            Route("/dead-letters", views.dead_letters),
            Route("/api/counts", views.counts),
            Mount("/static", StaticFiles(packages=[("baton.console", "static")]), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.templates = templates()
    app.add_middleware(SecurityHeaders)
    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound before the server starts, so a port in use is one clear error (OSError)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def server(settings: Settings) -> uvicorn.Server:
    """A uvicorn server for the console; ``run(sockets=[...])`` serves it. No access log: a
    search's query string may hold an idempotency key."""
    config = uvicorn.Config(
        create_app(settings), log_level="warning", access_log=False, lifespan="on",
        ws="none", server_header=False,
    )  # fmt: skip
    return uvicorn.Server(config)
