"""Baton processes started as real OS processes (demo, bench and fault tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO


class ProcessGroup:
    """Named child processes running ``python -m baton ...`` with a shared environment."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env = {**os.environ, **env}
        self._log_dir = log_dir
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}

    def spawn(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``baton ARGS`` as ``name``; its stderr (the JSON log) goes to ``<name>.log``."""
        log = self._logs.get(name) or (self._log_dir / f"{name}.log").open("ab")
        self._logs[name] = log
        proc = subprocess.Popen(
            [sys.executable, "-m", "baton", *args],
            env={**self._env, **(env or {}), "BATON_LOG__FORMAT": "json"},
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        self.procs[name] = proc
        return proc

    def spawn_command(
        self, name: str, argv: list[str], *, cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        """Start any program as ``name`` (a participant in another language), its output in
        ``<name>.log`` like the others'; stopped, killed and waited for the same way."""
        log = self._logs.get(name) or (self._log_dir / f"{name}.log").open("ab")
        self._logs[name] = log
        proc = subprocess.Popen(
            argv, cwd=cwd, env={**self._env, **(env or {})}, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs[name] = proc
        return proc

    def log_of(self, name: str) -> Path:
        """Where ``name``'s output goes."""
        return self._log_dir / f"{name}.log"

    def exited(self) -> dict[str, int]:
        """The processes that have ended, with their exit codes."""
        return {
            name: code for name, proc in self.procs.items() if (code := proc.poll()) is not None
        }

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up, no acks, exactly like a crash."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop(self, name: str, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait for a graceful exit; SIGKILL after ``timeout``."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        for log in self._logs.values():
            log.close()
        self._logs.clear()
