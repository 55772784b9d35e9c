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
import shutil
import signal
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

from tests.support.rabbit_node import RabbitNode, free_port

T = TypeVar("T")
__all__ = ["Prometheus", "RabbitNode", "ensure_prometheus", "free_port", "http_get", "wait_until"]


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
