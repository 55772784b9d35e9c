"""A three-node RabbitMQ cluster owned by one test suite, so it can kill nodes on purpose.

Each node is a :class:`RabbitNode` (own HOME, ports, mnesia, dist port) and all share one
Erlang cookie. Nodes 2..n join node 1 with ``join_cluster`` rather than through classic
config peer discovery: discovery in 3.10 races when all nodes boot at once (two nodes can
each form their own cluster), while an explicit join after boot either works or fails loudly.
The nodes boot in parallel (the slow part) and join one after the other (the quick part).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.rabbit_node import RabbitNode

__all__ = ["RabbitCluster"]

START_TIMEOUT_S = 180.0  # three Erlang VMs booting at once on two loaded cores


class RabbitCluster:
    """``size`` clustered nodes named ``<prefix>-<id>@localhost``; :attr:`url` lists them all
    in one multi-host URL, :attr:`urls` one URL a node."""

    def __init__(self, prefix: str, size: int = 3) -> None:
        cookie = secrets.token_hex(16).upper()
        self.nodes = [RabbitNode(prefix, cookie=cookie) for _ in range(size)]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"amqp://guest:guest@{hosts}/"

    @property
    def pids(self) -> list[int]:
        """Process groups of the running nodes."""
        return [node.pid for node in self.nodes if node.pid is not None]

    @property
    def dirs(self) -> list[Path]:
        return [node.dir for node in self.nodes]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Boot every node at once, join 2..n to node 1, wait until all run in one cluster.
        On failure everything started is killed and removed (the caller gets the error)."""
        try:
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                for booted in [pool.submit(node.start, timeout_s) for node in self.nodes]:
                    booted.result()
            first = self.nodes[0]
            for node in self.nodes[1:]:
                node.ctl("stop_app", timeout_s=timeout_s)
                node.ctl("reset", timeout_s=timeout_s)
                node.ctl("join_cluster", first.name, timeout_s=timeout_s)
                node.ctl("start_app", timeout_s=timeout_s)
                node.ctl("await_startup", "--timeout", str(int(timeout_s)), timeout_s=timeout_s)
            self._wait_running(set(range(len(self.nodes))), timeout_s)
        except BaseException:
            self.close()
            raise

    def cluster_status(self) -> dict[str, object]:
        """``rabbitmqctl cluster_status`` as JSON, asked of the first node that answers."""
        for node in self.nodes:
            if node.pid is None:
                continue
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                status: dict[str, object] = json.loads(
                    node.ctl("cluster_status", "--formatter", "json", timeout_s=30)
                )
                return status
        raise RuntimeError("no node of the cluster answers")

    def running(self) -> list[int]:
        """Indices of the nodes whose process lives and that the cluster reports running."""
        names = self.cluster_status().get("running_nodes", [])
        assert isinstance(names, list)
        return [i for i, node in enumerate(self.nodes) if node.pid and node.name in names]

    def _wait_running(self, wanted: set[int], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not wanted <= set(self.running()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes {sorted(wanted)} not running within {timeout_s}s")
            time.sleep(0.2)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``'s process group: a crash, its data stays on disk."""
        self.nodes[i].kill()

    def restart(self, i: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start node ``i`` again with the same name and data (it rejoins its cluster on
        boot) and wait until the cluster reports it running."""
        self.nodes[i].kill()
        self.nodes[i].start(timeout_s)
        self._wait_running({i}, timeout_s)

    def stop_listener(self, i: int) -> None:
        """Cut node ``i`` off from clients, not from its peers: its AMQP listener stops
        accepting (connects are refused) and its open client connections are closed. The
        node stays in the cluster and keeps its queue replicas."""
        self.nodes[i].ctl("suspend_listeners")
        self.nodes[i].close_all_connections()

    def resume_listener(self, i: int) -> None:
        self.nodes[i].ctl("resume_listeners")

    def freeze(self, i: int) -> None:
        """SIGSTOP node ``i``: clients and peers see a silent node (sockets stay open, nothing
        answers), as in a partition; its peers declare it down after net_ticktime (60 s).
        Until then ``rabbitmqctl`` questions to the others that involve it wait (30 s each)."""
        self._signal(i, signal.SIGSTOP)

    def thaw(self, i: int) -> None:
        self._signal(i, signal.SIGCONT)

    def _signal(self, i: int, sig: signal.Signals) -> None:
        pid = self.nodes[i].pid
        if pid is None:
            raise RuntimeError(f"node {i} is not running")
        os.killpg(pid, sig)

    def leader_of(self, queue: str, vhost: str = "/") -> int:
        """Index of the node that hosts quorum queue ``queue``'s leader."""
        for i in self.running():
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                rows = json.loads(
                    self.nodes[i].ctl(
                        "list_queues", "-p", vhost, "name", "leader", "--formatter", "json"
                    )
                )
                leader = next(row["leader"] for row in rows if row["name"] == queue)
                return next(j for j, node in enumerate(self.nodes) if node.name == leader)
        raise RuntimeError(f"no running node knows the leader of {queue!r}")

    def close(self) -> None:
        """Kill every node (no clean stop: it is thrown away) and remove its directory."""
        for node in self.nodes:
            node.kill()
            node.close()
