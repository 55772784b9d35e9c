"""A RabbitMQ node and a Redis server owned by the fault suite, so it can kill and restart them.

The shared servers on 5672/6379 are used by CI and other engineers: the suite never stops
them. It starts its own on spare ports in a temporary directory instead, and removes every
trace of them at the end, failure or not.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.rabbit_node import RabbitNode, free_port, kill_group
from tests.support.redis_process import start_redis

__all__ = ["RabbitNode", "RedisServer", "free_port"]


class RedisServer:
    """A private ``redis-server`` with an fsync-always AOF, so a kill -9 loses nothing acked."""

    def __init__(self, *extra_args: str) -> None:
        """``extra_args``: more ``redis-server`` options (``--min-replicas-to-write 1``...)."""
        self.dir = Path(tempfile.mkdtemp(prefix="baton-fault-redis-"))
        self.port = free_port()
        self.extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1",
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--dir", str(self.dir), "--daemonize", "no", *self.extra_args]  # fmt: skip
        self._proc = start_redis(self.dir, self.port, args)

    def kill(self) -> None:
        """SIGKILL, as a crash: only what the AOF already holds survives."""
        if self._proc is not None:
            kill_group(self._proc)
            self._proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        try:
            self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
