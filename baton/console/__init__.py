"""``baton console``: a read-only web console over one namespace's sagas and dead letters."""

from __future__ import annotations

from baton.console.app import create_app, listening_socket, server

__all__ = ["create_app", "listening_socket", "server"]
