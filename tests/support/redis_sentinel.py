"""A primary, its replica and three Sentinels owned by one test module, to kill the primary.

Every process is a private ``redis-server`` in its own temporary directory, on spare ports.
The Sentinels watch the primary as ``baton`` with quorum 2 and settings chosen for a quick,
certain failover after a kill -9: ``down-after-milliseconds 1000`` (sdown after 1 s) and
``failover-timeout 5000`` (a stalled failover is retried soon). Data nodes set
``repl-diskless-sync-delay 0`` so that a (re)started replica syncs at once, not after 5 s.

Sentinels learn replicas from the primary's INFO (every 10 s once started) and each other
from hello messages, so the replica is linked before the Sentinels start, and :meth:`start`
waits until every Sentinel knows the replica and both other Sentinels.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import redis

from tests.support import polling
from tests.support.rabbit_node import free_port, kill_group
from tests.support.redis_process import start_redis

__all__ = ["SERVICE", "SentinelSet"]

SERVICE = "baton"


def wait_for(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Poll ``check()`` (a ``RedisError`` counts as not yet) until true, or raise."""
    polling.wait_for(check, what, timeout_s, tolerate=(redis.RedisError,))


class _Process:
    """One ``redis-server`` (data node or Sentinel) in its own directory and process group."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, args: list[str]) -> None:
        self.proc = start_redis(self.dir, self.port, args)

    def start_data(self, replica_of: int | None = None) -> None:
        """A data node, no persistence (a restarted node resyncs from its primary)."""
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--repl-diskless-sync-delay", "0",
                "--dir", str(self.dir), "--daemonize", "no"]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.spawn(args)

    def start_sentinel(self, primary: int) -> None:
        """A Sentinel; its conf file lives in its directory (Sentinel rewrites it)."""
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\ndaemonize no\n"
            "sentinel resolve-hostnames no\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        self.spawn([str(conf), "--sentinel"])

    def kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    def close(self) -> None:
        try:
            self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class SentinelSet:
    """Two data nodes (one primary, one replica) and three Sentinels; :attr:`url` is the
    ``redis+sentinel://`` URL Baton accepts. Which data node is primary changes on failover."""

    def __init__(self, prefix: str = "baton-sentinel") -> None:
        self.data = {node.port: node for node in (_Process(prefix), _Process(prefix))}
        self.sentinels = [_Process(prefix) for _ in range(3)]
        self.primary, self.replica = list(self.data)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def client(self, port: int) -> redis.Redis:
        """A plain client of one data node or Sentinel."""
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def start(self, timeout_s: float = 30.0) -> None:
        """Start everything and wait until every Sentinel sees the whole set. On failure
        everything started is killed and removed (the caller gets the error)."""
        try:
            self.data[self.primary].start_data()
            self.start_replica(self.replica, self.primary, timeout_s)
            for sentinel in self.sentinels:
                sentinel.start_sentinel(self.primary)
            wait_for(self._known, "every Sentinel seeing the replica and its peers", timeout_s)
        except BaseException:
            self.close()
            raise

    def _known(self) -> bool:
        for sentinel in self.sentinels:
            with self.client(sentinel.port) as client:
                state = client.sentinel_master(SERVICE)
            if state["num-other-sentinels"] != 2 or state["num-slaves"] != 1:
                return False
        return True

    def start_replica(self, port: int, primary: int, timeout_s: float = 30.0) -> None:
        """(Re)start data node ``port`` as a replica of ``primary``; wait until it is linked
        and no Sentinel still holds it down (a failover only promotes a replica it sees up)."""
        node = self.data[port]
        node.kill()
        node.start_data(replica_of=primary)
        wait_for(lambda: self.linked(port), f"replication link of {port}", timeout_s)
        if any(s.proc is not None for s in self.sentinels):
            wait_for(lambda: self._replica_up(port), f"Sentinels seeing {port} up", timeout_s)

    def linked(self, port: int) -> bool:
        with self.client(port) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _replica_up(self, port: int) -> bool:
        for sentinel in self.sentinels:
            with self.client(sentinel.port) as client:
                replicas = client.sentinel_slaves(SERVICE)
            if not any(r["port"] == port and not r["is_sdown"] for r in replicas):
                return False
        return True

    def kill(self, port: int) -> None:
        """SIGKILL one data node."""
        self.data[port].kill()

    def named_primary(self) -> int:
        """The primary's port, as the first Sentinel names it."""
        with self.client(self.sentinels[0].port) as client:
            _host, port = client.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def kill_primary_and_wait_failover(self, timeout_s: float = 30.0) -> int:
        """Kill the primary; once every Sentinel names the replica, swap roles, return its port."""
        old, new = self.primary, self.replica
        self.kill(old)

        def switched() -> bool:
            for sentinel in self.sentinels:
                with self.client(sentinel.port) as client:
                    if int(client.sentinel_get_master_addr_by_name(SERVICE)[1]) != new:
                        return False
            return True

        wait_for(switched, f"Sentinels naming {new} primary", timeout_s)
        self.primary, self.replica = new, old
        return new

    def close(self) -> None:
        """Kill every process and remove its directory."""
        for node in [*self.sentinels, *self.data.values()]:
            node.close()
