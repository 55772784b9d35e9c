"""A Redis Cluster (3 primaries, 1 replica each) owned by one test suite, to kill primaries.

Every node is a private ``redis-server`` in its own directory, with an fsync-always AOF (a
kill -9 loses nothing acked) and these cluster settings, chosen for a failover that is quick
and certain after a kill -9 of a primary:

* ``cluster-node-timeout 2000``: a silent primary is PFAIL after 2 s, FAIL soon after.
* ``cluster-replica-validity-factor 0``: a replica may always take over, however long its
  link to the primary was down (the default refuses a replica that lost it for > 10 timeouts).
* ``cluster-require-full-coverage no``: while one shard fails over the other two keep
  serving, as in production; so readiness is judged on slot owners, not on cluster_state.
* ``repl-diskless-sync-delay 0``: a restarted node resyncs at once, not after 5 s.
* ``cluster-port``: the bus port is picked free too (the default, port + 10000, may be
  taken or above 65535).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.polling import wait_for
from tests.support.rabbit_node import free_port, kill_group
from tests.support.redis_process import start_redis

__all__ = ["ClusterNodeView", "RedisClusterServers"]

SLOTS = 16384


@dataclass
class ClusterNodeView:
    """One line of ``CLUSTER NODES``: who a node is, as another node sees it."""

    port: int
    flags: set[str]
    primary_id: str
    node_id: str
    slots: list[tuple[int, int]] = field(default_factory=list)

    @property
    def is_live_primary(self) -> bool:
        return "master" in self.flags and not self.flags & {"fail", "fail?", "noaddr"}


def _parse_nodes(text: str) -> list[ClusterNodeView]:
    views = []
    for line in text.splitlines():
        (
            node_id,
            address,
            flags,
            primary,
            *_,
        ) = line.split()[:8]
        slots = []
        for item in line.split()[8:]:
            if not item.startswith("["):  # "[slot->-id]": a migration, not ownership
                low, _, high = item.partition("-")
                slots.append((int(low), int(high or low)))
        port = int(address.split("@")[0].rsplit(":", 1)[1])
        views.append(ClusterNodeView(port, set(flags.split(",")), primary, node_id, slots))
    return views


class _Server:
    """One ``redis-server --cluster-enabled yes`` in its own directory."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-redis-"))
        self.port = free_port()
        self.bus_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(self.bus_port), "--cluster-node-timeout", "2000",
                "--cluster-replica-validity-factor", "0",
                "--cluster-require-full-coverage", "no", "--repl-diskless-sync-delay", "0",
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--dir", str(self.dir), "--daemonize", "no"]  # fmt: skip
        self.proc = start_redis(self.dir, self.port, args)

    def kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RedisClusterServers:
    """``primaries`` shards of ``replicas + 1`` nodes; :attr:`url` is the
    ``redis+cluster://`` URL Baton accepts, :attr:`startup_nodes` the same as pairs."""

    def __init__(self, prefix: str, primaries: int = 3, replicas: int = 1) -> None:
        self.replicas = replicas
        self.servers = [_Server(prefix) for _ in range(primaries * (replicas + 1))]
        self._by_port = {server.port: server for server in self.servers}

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    @property
    def dirs(self) -> list[Path]:
        return [server.dir for server in self.servers]

    @property
    def pids(self) -> list[int]:
        """Process groups of the running servers."""
        return [server.proc.pid for server in self.servers if server.proc and server.alive]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.ports]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every server, form the cluster, wait until every slot is served. On
        failure everything started is killed and removed (the caller gets the error)."""
        try:
            for server in self.servers:
                server.start()
            addresses = [f"127.0.0.1:{port}" for port in self.ports]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses,
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True, timeout=timeout_s, check=True,
            )  # fmt: skip
            self.wait_ok(timeout_s)
            wait_for(self._formed, "every replica known to every node", timeout_s)
        except BaseException:
            self.close()
            raise

    def client(self, port: int) -> redis.Redis:
        """A plain (not cluster-aware) client of one node."""
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def nodes_seen_by(self, port: int) -> list[ClusterNodeView]:
        with self.client(port) as client:
            return _parse_nodes(str(client.execute_command("CLUSTER", "NODES")))

    def _live_ports(self) -> list[int]:
        return [server.port for server in self.servers if server.alive]

    def _a_live_view(self) -> list[ClusterNodeView]:
        for port in self._live_ports():
            with contextlib.suppress(redis.RedisError):
                return self.nodes_seen_by(port)
        raise RuntimeError("no node of the Redis cluster answers")

    def primaries(self) -> list[int]:
        """Ports of the primaries that own slots and are not failed, as a live node sees it."""
        return sorted(v.port for v in self._a_live_view() if v.is_live_primary and v.slots)

    def primary_of_slot(self, slot: int) -> int:
        for view in self._a_live_view():
            if view.is_live_primary and any(low <= slot <= high for low, high in view.slots):
                return view.port
        raise LookupError(f"no live primary owns slot {slot}")

    def role(self, port: int) -> str:
        """``master`` or ``slave``, as the node itself says (INFO replication)."""
        with self.client(port) as client:
            return str(client.info("replication")["role"])

    def _ok(self) -> bool:
        """Every live node: cluster_state ok, all slots served by live primaries, and the
        same primaries as every other live node (a restarted old primary agrees only once
        it has learnt it was replaced)."""
        seen = set()
        try:
            for port in self._live_ports():
                with self.client(port) as client:
                    info = str(client.execute_command("CLUSTER", "INFO"))
                if "cluster_state:ok" not in info or f"cluster_slots_ok:{SLOTS}" not in info:
                    return False
                views = self.nodes_seen_by(port)
                owners = frozenset(v.port for v in views if v.is_live_primary and v.slots)
                served = sum(hi - lo + 1 for v in views if v.is_live_primary for lo, hi in v.slots)
                if served != SLOTS:
                    return False
                seen.add(owners)
        except redis.RedisError:
            return False
        return len(seen) == 1

    def _formed(self) -> bool:
        """Every node knows every other and each primary's replicas (gossip spreads the
        replica links a moment after ``--cluster create`` has returned)."""
        for port in self.ports:
            views = self.nodes_seen_by(port)
            owners = {v.node_id for v in views if v.is_live_primary and v.slots}
            followers = [v.primary_id for v in views if "slave" in v.flags]
            if len(views) != len(self.servers) or sorted(set(followers)) != sorted(owners):
                return False
            if any(followers.count(owner) != self.replicas for owner in owners):
                return False
        return True

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        wait_for(self._ok, "Redis cluster ok on every live node", timeout_s)

    def kill(self, port: int) -> None:
        """SIGKILL one node: only what its AOF holds survives."""
        self._by_port[port].kill()

    def restart(self, port: int, timeout_s: float = 30.0) -> None:
        """Start a killed node again on its own directory (nodes.conf, AOF): an old primary
        whose slots moved comes back as a replica of its replacement."""
        server = self._by_port[port]
        server.kill()
        server.start()
        self.wait_ok(timeout_s)
        if self.role(port) == "slave":  # and its copy is in sync before a test relies on it
            wait_for(lambda: self._linked(port), f"replication link of {port}", timeout_s)

    def _linked(self, port: int) -> bool:
        with self.client(port) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def kill_primary_and_wait_failover(self, port: int, timeout_s: float = 30.0) -> int:
        """Kill primary ``port``; return the port of the replica that took its slots."""
        mine = next(v for v in self._a_live_view() if v.port == port)
        if not mine.is_live_primary or not mine.slots:
            raise ValueError(f"{port} is not a primary with slots")
        slot = mine.slots[0][0]
        self.kill(port)

        def taken_over() -> bool:
            with contextlib.suppress(LookupError, redis.RedisError):
                return self.primary_of_slot(slot) != port
            return False

        wait_for(taken_over, f"failover of {port}", timeout_s)
        self.wait_ok(timeout_s)
        return self.primary_of_slot(slot)

    def close(self) -> None:
        """Kill every server and remove its directory."""
        for server in self.servers:
            try:
                server.kill()
            finally:
                shutil.rmtree(server.dir, ignore_errors=True)
