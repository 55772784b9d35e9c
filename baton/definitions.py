"""The deployment's broker and Redis set-up as files: a RabbitMQ definitions file, an ACL file.

Rendered from the same code the services use (``contracts.topology``, ``baton.access``,
``baton.policies``), from the per-service credentials in ``deploy/secrets/*.env``, by
``baton access --render``; a test keeps the committed files equal to the rendering.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from baton.access import acl_lines, broker_users, definitions, redis_users
from baton.policies import queue_policies
from contracts.topology import Topology

RABBIT_VERSION = "3.13.0"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments and blank lines skipped), as docker-compose reads."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def credentials(secrets: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(broker user -> password, Redis user -> password) from every ``*.env`` in ``secrets``."""
    broker: dict[str, str] = {}
    redis: dict[str, str] = {}
    for path in sorted(secrets.glob("*.env")):
        env = read_env_file(path)
        for variable, found in (("BATON_RABBIT__URL", broker), ("BATON_REDIS__URL", redis)):
            if variable in env:
                url = urllib.parse.urlsplit(env[variable])
                if url.username and url.password:
                    found[urllib.parse.unquote(url.username)] = urllib.parse.unquote(url.password)
    return broker, redis


def _exchange(name: str, kind: str, vhost: str) -> dict[str, Any]:
    return {"name": name, "vhost": vhost, "type": kind, "durable": True,
            "auto_delete": False, "internal": False, "arguments": {}}  # fmt: skip


def _queue(name: str, vhost: str, arguments: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "vhost": vhost, "durable": True, "auto_delete": False,
            "arguments": arguments}  # fmt: skip


def _binding(source: str, queue: str, key: str, vhost: str) -> dict[str, Any]:
    return {"source": source, "vhost": vhost, "destination": queue,
            "destination_type": "queue", "routing_key": key, "arguments": {}}  # fmt: skip


def topology_definitions(
    topology: Topology,
    participants: Iterable[str],
    queue_type: str = "classic",
    vhost: str = "/",
    delivery_limit: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """Exchanges, queues and bindings exactly as ``Broker.declare`` creates them.

    ``delivery_limit`` (quorum queues only; 0: the broker's default) goes on the work queues,
    not on their dead-letter queues, as ``BATON_RABBIT__DELIVERY_LIMIT`` does.
    """
    t = topology
    participants = list(participants)
    exchanges = [
        _exchange(t.commands_exchange, "direct", vhost),
        _exchange(t.replies_exchange, "direct", vhost),
        _exchange(t.events_exchange, "topic", vhost),
        _exchange(t.dead_letter_exchange, "direct", vhost),
        _exchange(t.start_exchange, "direct", vhost),
    ]
    work = t.work_queues(participants)
    queues = [
        _queue(q, vhost, t.work_queue_arguments(q, queue_type, delivery_limit)) for q in work
    ] + [_queue(t.dead_letter_queue(q), vhost, {"x-queue-type": queue_type}) for q in work]
    bindings = [
        _binding(t.replies_exchange, t.replies_queue, t.replies_queue, vhost),
        _binding(t.start_exchange, t.start_queue, t.start_queue, vhost),
        *(_binding(t.commands_exchange, t.command_queue(p), t.command_routing_key(p), vhost)
          for p in participants),
        *(_binding(t.dead_letter_exchange, t.dead_letter_queue(q), t.dead_letter_queue(q), vhost)
          for q in work),
    ]  # fmt: skip
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


def render_definitions(
    topology: Topology,
    participants: Iterable[str],
    passwords: dict[str, str],
    vhost: str = "/",
    *,
    queue_type: str = "classic",
    delivery_limit: int = 0,
) -> dict[str, Any]:
    """A whole definitions file: users, permissions, policies and the topology.

    The clustered deployment (deploy/cluster/) renders it with quorum queues and a delivery
    limit, so the queues a node imports at boot equal those ``baton declare`` then declares.
    """
    participants = list(participants)
    access = definitions(broker_users(topology, participants), passwords, vhost)
    return {
        "rabbit_version": RABBIT_VERSION,
        "users": access["users"],
        "vhosts": [{"name": vhost}],
        "permissions": access["permissions"],
        "topic_permissions": access["topic_permissions"],
        "policies": [p.definitions_entry(vhost) for p in queue_policies(topology)],
        **topology_definitions(topology, participants, queue_type, vhost, delivery_limit),
    }


# A Redis Cluster asks a client for more than its keys: redis-py's cluster client reads the
# slot map (CLUSTER SLOTS) at start and after each MOVED. Read-only metadata, no keys.
CLUSTER_CLIENT_RULES = ("+cluster|slots", "+cluster|shards", "+cluster|nodes", "+cluster|info")
# Not Baton's users: a replica authenticates to its primary (masteruser/masterauth) as the
# first; the one-shot `redis-cli --cluster create` (and check) runs as the second. Their
# passwords are in the clustered deployment's secrets/redis.env under these keys.
CLUSTER_USERS = {
    "baton-replication": ("REDIS_REPLICATION_PASSWORD", "+psync +replconf +ping"),
    "baton-cluster-admin": ("REDIS_CLUSTER_ADMIN_PASSWORD", "+@connection +cluster +info"),
}


def cluster_acl_lines(lines: list[str], redis_env: Path) -> list[str]:
    """A single server's ACL lines made fit for a Redis Cluster: slot-map reads for every
    Baton user, and the replication and cluster-admin users (no keys, no channels)."""
    env = read_env_file(redis_env)
    rules = " ".join(CLUSTER_CLIENT_RULES)
    extended = [lines[0], *(f"{line} {rules}" for line in lines[1:])]
    for name, (key, allowed) in CLUSTER_USERS.items():
        digest = hashlib.sha256(env[key].encode()).hexdigest()
        extended.append(f"user {name} on #{digest} resetkeys resetchannels -@all {allowed}")
    return extended


def render(
    secrets: Path,
    definitions_file: Path,
    acl_file: Path,
    participants: list[str],
    *,
    queue_type: str = "classic",
    delivery_limit: int = 0,
    redis_cluster: Path | None = None,
) -> None:
    """Write the definitions file and the ACL file for the empty namespace (with
    ``redis_cluster``, the env file of the cluster's own users: the cluster's ACL file)."""
    broker, redis = credentials(secrets)
    topology = Topology()
    rendered = render_definitions(
        topology, participants, broker, queue_type=queue_type, delivery_limit=delivery_limit
    )
    definitions_file.write_text(json.dumps(rendered, indent=2) + "\n")
    # an ACL file has no comments: docs/operations.md says what it is and how it is made
    lines = acl_lines(redis_users(topology, participants), redis)
    if redis_cluster is not None:
        lines = cluster_acl_lines(lines, redis_cluster)
    acl_file.write_text("\n".join(lines) + "\n")
