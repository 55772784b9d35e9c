"""A RabbitMQ node and a Redis server owned by the fault suite, so it can kill and restart them.

The shared servers on 5672/6379 are used by CI and other engineers: the suite never stops
them. It starts its own on spare ports in a temporary directory instead, and removes every
trace of them at the end, failure or not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the real scripts, not Debian's su wrappers


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(check: object, what: str, timeout_s: float) -> None:
    """Poll ``check()`` until true, or raise after ``timeout_s``."""
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout_s}s")
        time.sleep(0.1)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class RabbitNode:
    """One RabbitMQ node (``baton-fault-<id>@localhost``) with its own ports, data and cookie."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="baton-fault-rabbit-"))
        self.name = f"baton-fault-{secrets.token_hex(4)}@localhost"
        self.port = free_port()
        home = self.dir / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        (self.dir / "rabbitmq.conf").write_text("loopback_users = none\n")
        (self.dir / "enabled_plugins").write_text("[].\n")  # no management, no prometheus
        self.env = {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
        }
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        """``rabbitmqctl -n <this node> ARGS``; raises on failure."""
        done = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.decode()[-500:]}")
        return done.stdout.decode()

    def start(self) -> None:
        out = (self.dir / "server.out").open("ab")
        self._proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed as one
        )
        out.close()
        deadline = time.monotonic() + 90
        while True:  # await_startup fails at once until the node has registered with epmd
            try:
                self.ctl("await_startup", "--timeout", "60", timeout_s=70)
            except RuntimeError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise
                time.sleep(0.2)
            else:
                return

    def close_all_connections(self) -> None:
        self.ctl("close_all_connections", "baton fault suite")

    def restart(self) -> None:
        """Stop the whole node (durable queues and persistent messages stay on disk), start it."""
        self.stop_node()
        self.start()

    def stop_node(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.ctl("stop", timeout_s=60)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(30)
        _kill_group(self._proc)
        self._proc = None

    def close(self) -> None:
        """Stop the node and remove its directory."""
        try:
            self.stop_node()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """A private ``redis-server`` with an fsync-always AOF, so a kill -9 loses nothing acked."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="baton-fault-redis-"))
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--dir", str(self.dir), "--daemonize", "no"]  # fmt: skip
        out = (self.dir / "server.out").open("ab")
        self._proc = subprocess.Popen(
            args, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
        out.close()
        _wait(self._answers, "redis-server", 30)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash: only what the AOF already holds survives."""
        if self._proc is not None:
            _kill_group(self._proc)
            self._proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        try:
            self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
