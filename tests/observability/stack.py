"""A real Prometheus and a suite-owned RabbitMQ node (with its Prometheus plugin) for the tests.

The shared RabbitMQ on 5672 has no rabbitmq_prometheus plugin and the suite must not enable
plugins there, so the queue-depth panels are checked against a node of our own: started on
spare ports in a temp directory, stopped and removed at the end, failure or not. Prometheus
is the Debian package's binary (installed when missing), run by hand on a spare port with a
temp storage directory; the systemd unit is never used.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the real scripts, not Debian's su wrappers
T = TypeVar("T")


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], T | None], what: str, timeout_s: float) -> T:
    """Poll ``check`` until it returns something truthy; raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(0.2)


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """(status, body); connection errors read as status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def _stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the process group, then SIGKILL it when it does not exit in time."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
        return


def ensure_prometheus() -> str:
    """The prometheus binary, installed from the OS packages when missing (Debian: root)."""
    found = shutil.which("prometheus")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq",
                 "--no-install-recommends", "prometheus"]):  # fmt: skip
        done = subprocess.run(args, env=env, capture_output=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.decode()[-500:]}")
    found = shutil.which("prometheus")
    if not found:
        raise RuntimeError("the prometheus package installed no prometheus binary")
    return found


class RabbitNode:
    """A RabbitMQ node of this suite's own with rabbitmq_prometheus on a spare port."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="baton-obs-rabbit-"))
        self.name = f"baton-obs-{secrets.token_hex(4)}@localhost"
        self.port = free_port()
        self.prometheus_port = free_port()
        home = self.dir / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        (self.dir / "rabbitmq.conf").write_text(
            "loopback_users = none\n"
            f"prometheus.tcp.port = {self.prometheus_port}\n"
            "prometheus.tcp.ip = 127.0.0.1\n"
        )
        (self.dir / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
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
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
        }
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 90.0) -> None:
        out = (self.dir / "server.out").open("ab")
        self._proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, stopped as one
        )
        out.close()

        def ready() -> bool:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"rabbitmq exited; see {self.dir / 'server.out'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
            except OSError:
                return False
            return http_get(f"http://127.0.0.1:{self.prometheus_port}/metrics", 2)[0] == 200

        wait_until(ready, "the suite's RabbitMQ node to listen", timeout_s)

    def close(self) -> None:
        """Stop the node and remove its directory."""
        try:
            if self._proc is not None:
                _stop_group(self._proc, 30.0)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Prometheus:
    """The prometheus binary on a spare port, scraping what ``config`` says, evaluating rules."""

    def __init__(self, config: dict[str, Any], rules: dict[str, Any]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="baton-obs-prometheus-"))
        self.port = free_port()
        (self.dir / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config = {**config, "rule_files": [str(self.dir / "rules.yml")]}
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, binary: str, timeout_s: float = 30.0) -> None:
        out = (self.dir / "prometheus.out").open("ab")
        self._proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()

        def ready() -> bool:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log()[-1000:]}")
            return http_get(f"{self.base}/-/ready", 2)[0] == 200

        wait_until(ready, "prometheus to be ready", timeout_s)

    def log(self) -> str:
        path = self.dir / "prometheus.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a Prometheus HTTP API answer; raises on an error answer."""
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        status, body = http_get(url, 10)
        answer = json.loads(body) if body else {"status": "error", "error": f"HTTP {status}"}
        if answer.get("status") != "success":
            raise AssertionError(f"{path} {params}: {answer.get('error', answer)}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.api("alerts")["alerts"]
                if a["state"] == "firing"}  # fmt: skip

    def close(self) -> None:
        try:
            if self._proc is not None:
                _stop_group(self._proc, 15.0)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
