"""Who may do what: each service's RabbitMQ permissions and Redis ACL rules, for one namespace.

The running services never configure the broker: ``baton declare`` does, as the
administrative user. Every other user may read only the queues it consumes and write only
to the exchanges it publishes to. RabbitMQ checks three regular expressions per user and
virtual host (configure, write, read: docs/operations.md has the table of what each AMQP
operation needs) and, for topic exchanges, one more on the routing key. Redis ACL users
are limited to their key patterns and to data commands.

``deploy/rabbitmq/definitions.json``, ``deploy/redis/users.acl`` and the least-privilege
tests are checked against this module, so the documented matrix is the enforced one.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from baton_sdk.keys import InboxKeys
from contracts.topology import Topology
from messaging.transport.dead_marks import MARK_KEY
from orchestrator.runtime.keys import PREFIX as SAGA_PREFIX
from participants.payments.ledger import LedgerKeys
from participants.payments.pci import PciKeys

NOTHING = "^$"  # a permission regex no name matches
DEFAULT_EXCHANGE = "amq.default"  # what publishing to the "" exchange is checked against
SERVER_NAMED = "amq.gen-"  # queues RabbitMQ names for a client

# Data commands only: no KEYS, FLUSHALL, CONFIG, DEBUG, MONITOR, INFO or CLIENT KILL (all in
# @dangerous), no pub/sub. Scripts are checked command by command against the key patterns.
REDIS_COMMANDS = (
    "-@all", "+@read", "+@write", "+@keyspace", "+@scripting", "+@transaction",
    "+@connection", "-@dangerous",
)  # fmt: skip


def _only(*names: str) -> str:
    """A regex matching exactly ``names`` (escaped), or nothing."""
    if not names:
        return NOTHING
    return "^(" + "|".join(re.escape(n) for n in dict.fromkeys(names)) + ")$"


@dataclass(frozen=True, slots=True)
class TopicPermission:
    exchange: str
    write: str
    read: str


@dataclass(frozen=True, slots=True)
class BrokerUser:
    """One RabbitMQ user's permissions in Baton's virtual host."""

    name: str
    configure: str
    write: str
    read: str
    topics: tuple[TopicPermission, ...] = ()
    tags: tuple[str, ...] = ()
    role: str = ""


@dataclass(frozen=True, slots=True)
class RedisUser:
    """One Redis ACL user: its key patterns and the command categories it may run."""

    name: str
    keys: tuple[str, ...]
    commands: tuple[str, ...] = REDIS_COMMANDS
    role: str = ""

    def rules(self) -> list[str]:
        """The ACL rules after ``on`` and the password (``ACL SETUSER`` arguments)."""
        return ["resetkeys", *(f"~{k}" for k in self.keys), "resetchannels", *self.commands]


def user_name(topology: Topology, service: str) -> str:
    """``<ns>baton-<service>``: one broker and one Redis user per service."""
    return f"{topology.namespace}baton-{service}"


def broker_users(topology: Topology, participants: Iterable[str]) -> list[BrokerUser]:
    """The permission matrix: admin, orchestrator, one user per participant, the caller."""
    t = topology
    participants = list(participants)
    reply_queues = f"^({re.escape(SERVER_NAMED)}.*|{re.escape(t.reply_prefix)}.*)$"
    return [
        BrokerUser(
            user_name(t, "admin"), ".*", ".*", ".*", tags=("policymaker",),
            role="`baton declare` (topology, policies) and operator commands",
        ),
        BrokerUser(
            user_name(t, "orchestrator"),
            configure=NOTHING,
            write=_only(t.commands_exchange, t.events_exchange, t.dead_letter_exchange,
                        DEFAULT_EXCHANGE),  # the default exchange: answers to reply_to
            read=_only(t.start_queue, t.replies_queue),
            topics=(TopicPermission(t.events_exchange, write=r"^saga\.", read=NOTHING),),
            role="consumes starts and replies; publishes commands, events, dead letters",
        ),
        *(
            BrokerUser(
                user_name(t, name),
                configure=NOTHING,
                write=_only(t.replies_exchange, t.dead_letter_exchange),
                read=_only(t.command_queue(name)),
                role=f"consumes {t.command_queue(name)}; publishes replies and dead letters",
            )
            for name in participants
        ),
        BrokerUser(
            user_name(t, "caller"),
            configure=reply_queues,  # its own exclusive reply queue
            write=_only(t.start_exchange),
            read=reply_queues,
            role="publishes starts (to the start exchange) and reads its reply queue",
        ),
    ]  # fmt: skip


def _participant_keys(namespace: str, participant: str) -> tuple[str, ...]:
    """The Redis keys a payment participant's own data lives under."""
    ledger = LedgerKeys(namespace).prefix + "*"  # payment holds, transaction captures
    own = {"payment": ledger, "transaction": ledger,
           "risk": f"{namespace}risk:*", "pci": f"{namespace}pci:*"}  # fmt: skip
    return (own[participant],) if participant in own else ()


def _participant_checks(namespace: str, participant: str) -> tuple[str, ...]:
    """Other services' records a participant checks: a capture reads PCI's attestation in
    its ledger script, atomically (the same hash slot). A script's keys count as written
    (EVALSHA declares them read-write), so a read-only ``%R~`` pattern would refuse it."""
    if participant == "transaction":
        return (PciKeys(namespace).attestation("*"),)
    return ()


def redis_users(topology: Topology, participants: Iterable[str]) -> list[RedisUser]:
    """Redis ACL users: each service's keys only (the default user is switched off)."""
    ns = topology.namespace
    marks = MARK_KEY.format(namespace=ns, digest="*")  # dead-letter marks: every consumer's
    users = [
        RedisUser(user_name(topology, "admin"), (f"{ns}*",),
                  role="operator commands: status, list, books, dlq, demo"),
        RedisUser(user_name(topology, "orchestrator"), (f"{ns}{SAGA_PREFIX}:*",),
                  role="saga state, history, deadlines, outbox; dead-letter marks"),
    ]  # fmt: skip
    for name in participants:
        inbox = InboxKeys(ns, name).base + ":*"
        keys = (inbox, *_participant_keys(ns, name), *_participant_checks(ns, name), marks)
        users.append(RedisUser(user_name(topology, name), keys, role=f"{name}'s inbox and data"))
    return users


# -- rendering: definitions.json entries, ACL file lines ----------------------------------------


def rabbit_password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def rabbit_password_matches(password_hash: str, password: str) -> bool:
    raw = base64.b64decode(password_hash)
    return rabbit_password_hash(password, raw[:4]) == password_hash


def definitions(
    users: Iterable[BrokerUser], passwords: Mapping[str, str], vhost: str = "/"
) -> dict[str, list[dict[str, Any]]]:
    """The ``users``, ``permissions`` and ``topic_permissions`` of a definitions file."""
    rendered: dict[str, list[dict[str, Any]]] = {
        "users": [], "permissions": [], "topic_permissions": []
    }  # fmt: skip
    for user in users:
        rendered["users"].append({
            "name": user.name,
            "password_hash": rabbit_password_hash(passwords[user.name]),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": list(user.tags),
            "limits": {},
        })  # fmt: skip
        rendered["permissions"].append({
            "user": user.name, "vhost": vhost,
            "configure": user.configure, "write": user.write, "read": user.read,
        })  # fmt: skip
        rendered["topic_permissions"].extend(
            {"user": user.name, "vhost": vhost, "exchange": p.exchange,
             "write": p.write, "read": p.read}
            for p in user.topics
        )  # fmt: skip
    return rendered


def acl_lines(users: Iterable[RedisUser], passwords: Mapping[str, str]) -> list[str]:
    """An ACL file (``aclfile``): passwords as SHA-256 (``#<hex>``), the default user off."""
    lines = ["user default off resetkeys resetchannels -@all"]
    for user in users:
        digest = hashlib.sha256(passwords[user.name].encode()).hexdigest()
        lines.append(" ".join(["user", user.name, "on", f"#{digest}", *user.rules()]))
    return lines


def matrix(topology: Topology, participants: Iterable[str]) -> dict[str, Any]:
    """Both tables, for ``baton access`` and the docs."""
    participants = list(participants)
    return {
        "rabbitmq": [
            {"user": u.name, "role": u.role, "configure": u.configure, "write": u.write,
             "read": u.read, "tags": list(u.tags),
             "topics": [{"exchange": p.exchange, "write": p.write, "read": p.read}
                        for p in u.topics]}
            for u in broker_users(topology, participants)
        ],
        "redis": [
            {"user": u.name, "role": u.role, "rules": u.rules()}
            for u in redis_users(topology, participants)
        ],
    }  # fmt: skip
