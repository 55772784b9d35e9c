"""Real clusters on this machine, on spare ports: a RabbitMQ cluster and a Redis Cluster.

The fault suite must kill nodes, so it cannot use the shared servers (5672/6379). The
classes live in :mod:`tests.support.rabbit_cluster` and :mod:`tests.support.redis_cluster`;
this module re-exports them and is also a small CLI (``tests/clusters.sh`` calls it) that
starts both in the background for a hand-run session and stops them again::

    python -m tests.support.clusters up --state-dir .baton/clusters
    python -m tests.support.clusters down --state-dir .baton/clusters

``up`` leaves the servers running after it exits (each runs in its own session) and writes
``state.json`` (process groups and directories, what ``down`` kills and removes) and ``env``
(the ``BATON_RABBIT__URL`` and ``BATON_REDIS__URL`` lines it also prints).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from tests.support.rabbit_cluster import RabbitCluster
from tests.support.redis_cluster import RedisClusterServers

__all__ = ["RabbitCluster", "RedisClusterServers", "main"]

STATE = "state.json"
ENV = "env"


def _alive(group: int) -> bool:
    """Whether any process of process group ``group`` still runs (zombies do not count:
    the servers outlive ``up``, so their reaper is whatever init this machine has)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            state, _, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
            if int(pgrp) == group and state != "Z":
                return True
    return False


def up(state_dir: Path) -> int:
    """Start both clusters, record them in ``state_dir``, print the URLs."""
    state_file = state_dir / STATE
    if state_file.exists():
        print(f"clusters already up ({state_file}); run `down` first", file=sys.stderr)
        return 1
    state_dir.mkdir(parents=True, exist_ok=True)
    rabbit, redis_servers = RabbitCluster("baton-clusters"), RedisClusterServers("baton-clusters")
    try:
        began = time.monotonic()
        redis_servers.start()
        redis_s = time.monotonic() - began
        rabbit.start()
        rabbit_s = time.monotonic() - began - redis_s
    except BaseException:
        rabbit.close()
        redis_servers.close()
        raise
    pids = [node.pid for node in rabbit.nodes] + [
        s.proc.pid for s in redis_servers.servers if s.proc
    ]
    state = {"pids": pids, "dirs": [str(d) for d in [*rabbit.dirs, *redis_servers.dirs]]}
    state_file.write_text(json.dumps(state, indent=2) + "\n")
    env = f"BATON_RABBIT__URL={rabbit.url}\nBATON_REDIS__URL={redis_servers.url}\n"
    (state_dir / ENV).write_text(env)
    print(env, end="")
    print(f"started: redis in {redis_s:.1f}s, rabbitmq in {rabbit_s:.1f}s", file=sys.stderr)
    return 0


def down(state_dir: Path) -> int:
    """Kill every process group ``up`` recorded and remove the directories and state."""
    state_file = state_dir / STATE
    if not state_file.exists():
        print(f"no clusters recorded in {state_dir}", file=sys.stderr)
        return 0
    state = json.loads(state_file.read_text())
    for pid in state["pids"]:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(pid and _alive(pid) for pid in state["pids"]) and time.monotonic() < deadline:
        time.sleep(0.1)  # not a settle: the kernel is reaping what was just killed
    for directory in state["dirs"]:
        shutil.rmtree(directory, ignore_errors=True)
    state_file.unlink()
    (state_dir / ENV).unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.clusters")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=Path(".baton/clusters"))
    args = parser.parse_args(argv)
    return up(args.state_dir) if args.action == "up" else down(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
