"""Queue limits as RabbitMQ policies, set by ``baton declare --policies`` (management API).

Policies rather than queue arguments: RabbitMQ refuses to redeclare an existing queue with
different arguments, while a policy applies to existing and new queues alike and can be
changed at any time. Deployments get the same policies from
``deploy/rabbitmq/definitions.json``; without the management plugin, ``rabbitmqctl
set_policy`` with the values of ``rabbitmqctl_commands`` does it.

A queue has at most one policy (the highest priority wins): a deployment with its own
policies for Baton's queues must merge these keys into them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from contracts.topology import Topology
from messaging.errors import BatonError
from messaging.observability.logs import masked

# Starts waiting at most: ~5 minutes of starts at the rate the issue measured (10,000 in a
# burst took ~10 minutes), matching the default start TTL of 300 s; beyond it the broker
# refuses the publish (the caller's confirm is a nack) instead of queueing work that would
# expire before it is taken.
START_MAX_LENGTH = 5_000
# Dead letters kept per dead-letter queue. When full, Baton's copy is refused and the
# original goes back to its own queue (nothing is dropped silently); alert on DLQ depth.
DEAD_MAX_LENGTH = 100_000
PRIORITY = 10
MANAGEMENT_PORT = 15672


class PolicyError(BatonError):
    """The management API refused or could not be reached."""


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    pattern: str
    definition: dict[str, Any] = field(default_factory=dict)
    priority: int = PRIORITY
    apply_to: str = "queues"

    def body(self) -> dict[str, Any]:
        """The management API's (and a definitions file's) shape, without name and vhost."""
        return {"pattern": self.pattern, "definition": self.definition,
                "priority": self.priority, "apply-to": self.apply_to}  # fmt: skip

    def definitions_entry(self, vhost: str = "/") -> dict[str, Any]:
        return {"vhost": vhost, "name": self.name, **self.body()}


def queue_policies(
    topology: Topology,
    *,
    start_max_length: int = START_MAX_LENGTH,
    dead_max_length: int = DEAD_MAX_LENGTH,
) -> list[Policy]:
    """The start queue's and the dead-letter queues' length limits, both ``reject-publish``."""
    t = topology
    dead_prefix = t.dead_letter_queue(t.start_queue).removesuffix("start")
    return [
        Policy(
            f"{t.namespace}baton-start",
            f"^{re.escape(t.start_queue)}$",
            {"max-length": start_max_length, "overflow": "reject-publish"},
        ),
        Policy(
            f"{t.namespace}baton-dead-letters",
            f"^{re.escape(dead_prefix)}",
            {"max-length": dead_max_length, "overflow": "reject-publish"},
        ),
    ]


def rabbitmqctl_commands(policies: list[Policy], vhost: str = "/") -> list[list[str]]:
    """``rabbitmqctl set_policy`` argument lists that set ``policies`` (no plugin needed)."""
    return [
        ["set_policy", "-p", vhost, "--priority", str(p.priority), "--apply-to", p.apply_to,
         p.name, p.pattern, json.dumps(p.definition)]
        for p in policies
    ]  # fmt: skip


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URL names ("/" when its path is empty)."""
    path = urllib.parse.urlsplit(amqp_url).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


def management_url_of(amqp_url: str) -> str:
    """The management API of the broker an AMQP URL points at (same host and user)."""
    parts = urllib.parse.urlsplit(amqp_url)
    scheme = "https" if parts.scheme == "amqps" else "http"
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return f"{scheme}://{netloc}:{MANAGEMENT_PORT}/"


def _request(url: str, method: str, body: dict[str, Any] | None = None) -> Any:
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    plain = urllib.parse.urlunsplit(
        (parts.scheme, f"{host}:{parts.port}" if parts.port else host, parts.path, "", "")
    )
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(plain, data=data, method=method)  # http(s): see _put_all
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        raw = answer.read()
    return json.loads(raw) if raw else None


def _api(base: str, *parts: str) -> str:
    return base.rstrip("/") + "/api/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)


def _put_all(base: str, vhost: str, policies: list[Policy]) -> None:
    if not base.startswith(("http://", "https://")):
        raise PolicyError(f"management URL must be http(s): {masked(base)}")
    for policy in policies:
        try:
            _request(_api(base, "policies", vhost, policy.name), "PUT", policy.body())
        except urllib.error.HTTPError as exc:
            hint = " (the user needs the policymaker tag)" if exc.code in (401, 403) else ""
            raise PolicyError(
                f"management API refused policy {policy.name}: HTTP {exc.code}{hint}"
            ) from exc
        except OSError as exc:
            raise PolicyError(
                f"management API unreachable at {masked(base)} ({exc}): enable the"
                " rabbitmq_management plugin, or set the policies from"
                " deploy/rabbitmq/definitions.json or with rabbitmqctl set_policy"
            ) from exc


async def apply_policies(base_url: str, vhost: str, policies: list[Policy]) -> None:
    """PUT each policy through the management API at ``base_url`` (credentials in the URL)."""
    await asyncio.to_thread(_put_all, base_url, vhost, policies)


def with_credentials(base_url: str, amqp_url: str) -> str:
    """``base_url`` with the AMQP URL's user and password, unless it carries its own."""
    base, amqp = urllib.parse.urlsplit(base_url), urllib.parse.urlsplit(amqp_url)
    if base.username or not amqp.username:
        return base_url
    auth = amqp.netloc.rsplit("@", 1)[0]
    return urllib.parse.urlunsplit(base._replace(netloc=f"{auth}@{base.netloc}"))
