"""The deployment's broker and Redis set-up as files: a RabbitMQ definitions file, an ACL file.

Rendered from the same code the services use (``contracts.topology``, ``baton.access``,
``baton.policies``), from the per-service credentials in ``deploy/secrets/*.env``, by
``baton access --render``; a test keeps the committed files equal to the rendering.
"""

from __future__ import annotations

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
    topology: Topology, participants: Iterable[str], queue_type: str = "classic", vhost: str = "/"
) -> dict[str, list[dict[str, Any]]]:
    """Exchanges, queues and bindings exactly as ``Broker.declare`` creates them."""
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
        _queue(
            q,
            vhost,
            {
                "x-queue-type": queue_type,
                "x-dead-letter-exchange": t.dead_letter_exchange,
                "x-dead-letter-routing-key": t.dead_letter_queue(q),
            },
        )
        for q in work
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
    topology: Topology, participants: Iterable[str], passwords: dict[str, str], vhost: str = "/"
) -> dict[str, Any]:
    """A whole definitions file: users, permissions, policies and the topology."""
    participants = list(participants)
    access = definitions(broker_users(topology, participants), passwords, vhost)
    return {
        "rabbit_version": RABBIT_VERSION,
        "users": access["users"],
        "vhosts": [{"name": vhost}],
        "permissions": access["permissions"],
        "topic_permissions": access["topic_permissions"],
        "policies": [p.definitions_entry(vhost) for p in queue_policies(topology)],
        **topology_definitions(topology, participants, vhost=vhost),
    }


def render(secrets: Path, definitions_file: Path, acl_file: Path, participants: list[str]) -> None:
    """Write the definitions file and the ACL file for the empty namespace."""
    broker, redis = credentials(secrets)
    topology = Topology()
    rendered = render_definitions(topology, participants, broker)
    definitions_file.write_text(json.dumps(rendered, indent=2) + "\n")
    # an ACL file has no comments: docs/operations.md says what it is and how it is made
    lines = acl_lines(redis_users(topology, participants), redis)
    acl_file.write_text("\n".join(lines) + "\n")
