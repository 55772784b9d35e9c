"""A RabbitMQ node owned by one test suite: its own ports, data, cookie and plugins.

The shared node on 5672 serves CI and other engineers, so suites that must stop, restart
or reconfigure a broker start one of these instead and remove every trace of it at the end.
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
import urllib.request
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the real scripts, not Debian's su wrappers


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _serves_metrics(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# As deploy/rabbitmq/rabbitmq.conf: big messages are refused by the broker itself.
MAX_MESSAGE_SIZE = 512 * 1024


class RabbitNode:
    """One node, ``<prefix>-<id>@localhost``; ``prometheus`` turns on rabbitmq_prometheus,
    ``management`` the management API (on ``management_port``); ``extra_config`` is
    appended to its rabbitmq.conf (TLS listeners, for one); ``cookie`` is its Erlang cookie
    (nodes of one cluster share one; by default each node gets its own)."""

    def __init__(
        self,
        prefix: str,
        *,
        prometheus: bool = False,
        management: bool = False,
        extra_config: str = "",
        cookie: str | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-rabbit-"))
        self.name = f"{prefix}-{secrets.token_hex(4)}@localhost"
        self.port = free_port()
        self.prometheus_port = free_port() if prometheus else 0
        self.management_port = free_port() if management else 0
        home = self.dir / "home"
        home.mkdir()
        cookie_file = home / ".erlang.cookie"
        cookie_file.write_text(cookie or secrets.token_hex(16).upper())
        cookie_file.chmod(0o400)
        config = f"loopback_users = none\nmax_message_size = {MAX_MESSAGE_SIZE}\n"
        if prometheus:
            config += (
                f"prometheus.tcp.port = {self.prometheus_port}\nprometheus.tcp.ip = 127.0.0.1\n"
            )
        if management:  # on its own port: never the shared node's 15672
            config += (
                f"management.tcp.port = {self.management_port}\nmanagement.tcp.ip = 127.0.0.1\n"
            )
        (self.dir / "rabbitmq.conf").write_text(config + extra_config)
        enabled = ["rabbitmq_prometheus"] * prometheus + ["rabbitmq_management"] * management
        (self.dir / "enabled_plugins").write_text(f"[{','.join(enabled)}].\n")
        self.env = {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",  # not the shared node's rabbitmq-env.conf
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
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

    def start(self, timeout_s: float = 90.0) -> None:
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
        deadline = time.monotonic() + timeout_s
        while True:  # await_startup fails at once until the node has registered with epmd
            try:
                self.ctl("await_startup", "--timeout", "60", timeout_s=70)
            except RuntimeError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise
                time.sleep(0.2)
            else:
                break
        while self.prometheus_port and not _serves_metrics(self.prometheus_port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"rabbitmq_prometheus did not answer; see {self.dir}")
            time.sleep(0.2)
        while self.management_port and not _listens(self.management_port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"rabbitmq_management did not answer; see {self.dir}")
            time.sleep(0.2)

    @property
    def pid(self) -> int | None:
        """The process group of the running node (None when stopped): what a cluster's
        state file records so that another process can kill it."""
        return None if self._proc is None or self._proc.poll() is not None else self._proc.pid

    def kill(self) -> None:
        """SIGKILL the whole node, as a crash: no clean shutdown, data stays on disk."""
        if self._proc is not None:
            kill_group(self._proc)
            self._proc = None

    def close_all_connections(self) -> None:
        self.ctl("close_all_connections", "baton test suite")

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
        kill_group(self._proc)
        self._proc = None

    def close(self) -> None:
        """Stop the node and remove its directory."""
        try:
            self.stop_node()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
