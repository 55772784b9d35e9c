"""A private redis-server for the security suite: a plain port and a TLS port, ACL users.

The shared Redis on 6379 serves CI and other engineers: users and TLS are never set on it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.security.pki import Pki
from tests.support.rabbit_node import free_port, kill_group
from tests.support.redis_process import start_redis


class RedisServer:
    """``redis-server`` on ``port`` (plain) and ``tls_port`` (client certificates required).

    Its default user keeps full access, so the suite can create ACL users (``ACL SETUSER``)
    as a deployment's ACL file would; the tests then connect only as those users.
    """

    def __init__(self, pki: Pki) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="baton-security-redis-"))
        self.port = free_port()
        self.tls_port = free_port()
        self._pki = pki
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str = "", password: str = "") -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def tls_url(self, user: str, password: str) -> str:
        pki = self._pki
        return (
            f"rediss://{user}:{password}@localhost:{self.tls_port}/0?ssl_ca_certs={pki.ca}"
            f"&ssl_certfile={pki.client_cert}&ssl_keyfile={pki.client_key}"
        )

    def start(self, timeout_s: float = 30.0) -> None:
        pki = self._pki
        args = ["--port", str(self.port), "--bind", "127.0.0.1",
                "--tls-port", str(self.tls_port), "--tls-cert-file", str(pki.server_cert),
                "--tls-key-file", str(pki.server_key), "--tls-ca-cert-file", str(pki.ca),
                "--tls-auth-clients", "yes", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--daemonize", "no"]  # fmt: skip
        self._proc = start_redis(self.dir, self.port, args, timeout_s)

    def close(self) -> None:
        try:
            if self._proc is not None:
                kill_group(self._proc)
                self._proc = None
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
