"""Whether a private redis-server answers: the readiness check both suites' launchers use."""

from __future__ import annotations

import socket


def redis_answers(port: int) -> bool:
    """A raw PING on 127.0.0.1:``port`` (no client library: the server may need auth or TLS
    on its other ports, and this one only has to say it is up)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
