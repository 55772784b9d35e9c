"""Least privilege and bounds as data: the permission matrix, the limits, the deploy files
that carry them, secrets masked in every line, library logs through the one pipeline."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import yaml

from baton.access import (
    DEFAULT_EXCHANGE,
    acl_lines,
    broker_users,
    rabbit_password_hash,
    rabbit_password_matches,
    redis_users,
)
from baton.definitions import credentials, render_definitions
from baton.policies import (
    START_MAX_LENGTH,
    management_url_of,
    queue_policies,
    rabbitmqctl_commands,
    vhost_of,
    with_credentials,
)
from baton_sdk.keys import InboxKeys
from contracts.topology import Topology
from messaging.observability.logs import MASK, configure_logging, masked
from messaging.transport.codec import MAX_BODY_BYTES
from orchestrator.core.answers import safe_reply_to
from orchestrator.runtime.keys import KeySpace
from participants.payments.ledger import LedgerKeys
from tests.conftest import PARTICIPANTS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NS = Topology(namespace="prod.")


def permits(regex: str, name: str) -> bool:
    """As RabbitMQ matches a permission: an unanchored regex search over the name."""
    return re.search(regex, name) is not None


# -- the broker permission matrix ---------------------------------------------------------------


def test_a_participant_reads_its_own_queue_and_writes_replies_and_dead_letters_only() -> None:
    t = NS
    payment = {u.name: u for u in broker_users(t, PARTICIPANTS)}["prod.baton-payment"]
    assert payment.configure == "^$"
    assert permits(payment.read, t.command_queue("payment"))
    for other in ("risk", "pci", "transaction"):
        assert not permits(payment.read, t.command_queue(other))
    assert not permits(payment.read, t.start_queue)
    assert not permits(payment.read, t.replies_queue)
    assert permits(payment.write, t.replies_exchange)
    assert permits(payment.write, t.dead_letter_exchange)
    for forbidden in (t.commands_exchange, t.events_exchange, t.start_exchange, DEFAULT_EXCHANGE):
        assert not permits(payment.write, forbidden), forbidden
    assert not permits(payment.read, "prod.baton.cmd.payment.evil")  # anchored


def test_the_orchestrator_caller_and_admin_users() -> None:
    t = NS
    users = {u.name.removeprefix("prod.baton-"): u for u in broker_users(t, PARTICIPANTS)}
    orchestrator, caller, admin = users["orchestrator"], users["caller"], users["admin"]
    assert orchestrator.configure == "^$"
    assert {q for q in t.all_queues(PARTICIPANTS) if permits(orchestrator.read, q)} == {
        t.start_queue, t.replies_queue,
    }  # fmt: skip
    assert {e for e in [*t.exchanges, DEFAULT_EXCHANGE] if permits(orchestrator.write, e)} == {
        t.commands_exchange, t.events_exchange, t.dead_letter_exchange, DEFAULT_EXCHANGE,
    }  # fmt: skip
    (events,) = orchestrator.topics
    assert events.exchange == t.events_exchange
    assert permits(events.write, "saga.payment.completed")
    assert {e for e in [*t.exchanges, DEFAULT_EXCHANGE] if permits(caller.write, e)} == {
        t.start_exchange
    }
    assert permits(caller.configure, "amq.gen-x1")
    assert permits(caller.read, "prod.baton.reply.x")
    assert not any(permits(caller.read, q) for q in t.all_queues(PARTICIPANTS))
    assert admin.configure == admin.write == admin.read == ".*"
    assert admin.tags == ("policymaker",)  # sets policies through the management API


def test_every_regex_escapes_the_namespace() -> None:
    t = Topology(namespace="a.b-c:d.")
    payment = {u.name: u for u in broker_users(t, PARTICIPANTS)}["a.b-c:d.baton-payment"]
    assert permits(payment.read, t.command_queue("payment"))
    assert not permits(payment.read, "aXb-c:d.baton.cmd.payment")


# -- Redis ACL users ----------------------------------------------------------------------------


def glob(pattern: str, key: str) -> bool:
    """Redis's glob for these patterns: ``*`` only (braces are literal)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), key) is not None


def test_each_redis_user_is_limited_to_its_own_keys() -> None:
    ns = "prod."
    users = {u.name.removeprefix("prod.baton-"): u for u in redis_users(NS, PARTICIPANTS)}
    saga_key = KeySpace(ns, 16).saga("s-1")
    ledger_key = LedgerKeys(ns).hold("h-1")
    inbox = {p: InboxKeys(ns, p).outcome("e-1") for p in PARTICIPANTS}

    def may(user: str, key: str) -> bool:
        return any(glob(pattern, key) for pattern in users[user].keys)

    assert may("orchestrator", saga_key)
    assert not may("orchestrator", ledger_key)
    assert not any(may("orchestrator", key) for key in inbox.values())
    for name in PARTICIPANTS:
        assert may(name, inbox[name])
        assert not may(name, saga_key), name
        assert not any(may(name, inbox[other]) for other in PARTICIPANTS if other != name)
    assert [may(name, ledger_key) for name in PARTICIPANTS] == [True, False, False, True]
    assert may("risk", "prod.risk:blocklist")
    assert not may("payment", "prod.risk:blocklist")
    assert all("-@dangerous" in u.commands for u in users.values())


# -- policies: the queue limits -----------------------------------------------------------------


def test_the_limits_are_policies_on_the_start_and_dead_letter_queues_only() -> None:
    t = NS
    start, dead = queue_policies(t)
    assert start.definition == {"max-length": START_MAX_LENGTH, "overflow": "reject-publish"}
    assert [q for q in t.all_queues(PARTICIPANTS) if re.search(start.pattern, q)] == [t.start_queue]
    dead_queues = [t.dead_letter_queue(q) for q in t.work_queues(PARTICIPANTS)]
    assert [q for q in t.all_queues(PARTICIPANTS) if re.search(dead.pattern, q)] == dead_queues
    assert dead.definition["overflow"] == "reject-publish"
    assert not re.search(start.pattern, "other.baton.start")  # another namespace's
    (command, _) = rabbitmqctl_commands([start, dead], "/")
    assert command[:7] == ["set_policy", "-p", "/", "--priority", "10", "--apply-to", "queues"]
    assert json.loads(command[-1]) == start.definition


def test_the_management_api_is_found_from_the_amqp_url() -> None:
    url = "amqp://baton-admin:s%40cret@rabbit.example:5672/prod"
    assert vhost_of(url) == "prod"
    assert {vhost_of("amqp://h/"), vhost_of("amqp://h"), vhost_of("amqp://h/%2F")} == {"/"}
    assert management_url_of(url) == "http://baton-admin:s%40cret@rabbit.example:15672/"
    assert management_url_of("amqps://h:5671/").startswith("https://h:15672")
    assert with_credentials("http://m:15672/", url) == "http://baton-admin:s%40cret@m:15672/"
    assert with_credentials("http://x:y@m/", url) == "http://x:y@m/"


# -- the deploy files carry exactly this ----------------------------------------------------------


@pytest.fixture(scope="module")
def passwords() -> tuple[dict[str, str], dict[str, str]]:
    return credentials(DEPLOY / "secrets")


def test_the_definitions_file_is_the_rendered_matrix_with_no_guest(
    passwords: tuple[dict[str, str], dict[str, str]],
) -> None:
    broker, _ = passwords
    committed = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    expected = render_definitions(Topology(), PARTICIPANTS, broker)
    for user in committed["users"]:  # salted: verify instead of comparing
        assert rabbit_password_matches(user.pop("password_hash"), broker[user["name"]])
    for user in expected["users"]:
        user.pop("password_hash")
    assert committed == expected, "run `baton access --render deploy/secrets`"
    names = {u["name"] for u in committed["users"]}
    assert "guest" not in names
    assert {"baton-admin", "baton-orchestrator", "baton-caller"} | {
        f"baton-{p}" for p in PARTICIPANTS
    } == names


def test_the_redis_acl_file_is_the_rendered_users_with_the_default_user_off(
    passwords: tuple[dict[str, str], dict[str, str]],
) -> None:
    _, redis = passwords
    lines = (DEPLOY / "redis" / "users.acl").read_text().splitlines()
    assert lines == acl_lines(redis_users(Topology(), PARTICIPANTS), redis)
    assert lines[0].startswith("user default off")


def test_compose_gives_each_service_its_own_credentials_and_declares_first() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("orchestrator", *PARTICIPANTS):
        assert services[name]["env_file"] == [f"deploy/secrets/{name}.env"]
        assert services[name]["depends_on"]["declare"] == {
            "condition": "service_completed_successfully"
        }
        assert services[name]["environment"]["BATON_METRICS__HOST"] == "0.0.0.0"
    assert services["declare"]["env_file"] == ["deploy/secrets/admin.env"]
    assert "--policies" in services["declare"]["command"]
    assert "guest:" not in (ROOT / "docker-compose.yml").read_text()
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    found = re.search(r"^max_message_size = (\d+)$", conf, re.MULTILINE)
    assert found is not None
    size = int(found.group(1))
    assert MAX_BODY_BYTES < size <= 1024 * 1024
    assert "loopback_users.guest" not in conf


def test_kubernetes_keeps_credentials_in_per_service_secrets() -> None:
    config = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    assert not any(key.endswith("__URL") for key in config)
    assert config["BATON_METRICS__HOST"] == "0.0.0.0"
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    secrets = {s["name"] for s in kustomization["secretGenerator"]}
    assert secrets == {"baton-admin", "baton-orchestrator"} | {f"baton-{p}" for p in PARTICIPANTS}
    text = "".join(p.read_text() for p in (DEPLOY / "k8s").glob("*.yaml"))
    assert "guest" not in text
    for name in ("orchestrator", *PARTICIPANTS):
        assert f"{{secretKeyRef: {{name: baton-{name}, key: BATON_RABBIT__URL}}}}" in text


def test_password_hashes_are_rabbitmqs_salted_sha256() -> None:
    hashed = rabbit_password_hash("s3cret", salt=b"\x00\x01\x02\x03")
    assert rabbit_password_matches(hashed, "s3cret")
    assert not rabbit_password_matches(hashed, "other")


# -- reply_to: only a caller's own queues -------------------------------------------------------


def test_reply_to_is_restricted_to_server_named_and_reply_prefixed_queues() -> None:
    t = NS
    assert safe_reply_to("amq.gen-Xy_12", t) == "amq.gen-Xy_12"
    assert safe_reply_to("prod.baton.reply.abc", t) == "prod.baton.reply.abc"
    for refused in ("prod.baton.cmd.payment", "prod.baton.replies", "baton.reply.x",
                    "amq_0f3a", "other", "", "amq.gen-x y", "prod.baton.reply.\n"):  # fmt: skip
        assert safe_reply_to(refused, t) == "", refused


# -- secrets never echoed; library logs through the one pipeline --------------------------------


def test_passwords_in_urls_are_masked() -> None:
    assert masked("amqp://baton-orchestrator:s3cret@rabbit:5672/") == (
        f"amqp://baton-orchestrator:{MASK}@rabbit:5672/"
    )
    assert masked("redis://:pw@h:6379/0 and amqps://u:p%40ss@h/?cafile=/c") == (
        f"redis://:{MASK}@h:6379/0 and amqps://u:{MASK}@h/?cafile=/c"
    )
    assert masked("rediss://user:with@sign@h:1/0") == f"rediss://user:{MASK}@h:1/0"
    for untouched in ("amqp://user@h/", "http://h/p?q=1", "no url here", "a:b@c"):
        assert masked(untouched) == untouched


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_library_log_lines_are_json_through_the_same_redaction(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    logging.getLogger("aio_pika.robust_connection").info(
        "Connection to %s closed. Reconnecting after 5 seconds.",
        "amqp://baton-payment:s3cret@rabbit:5672/",
    )
    logging.getLogger("aiormq.connection").debug("below the level: dropped")
    failure = ConnectionError("cannot reach redis://baton-payment:s3cret@redis:6379/0")
    logging.getLogger("redis.asyncio").error("reconnect failed", exc_info=failure)
    structlog.get_logger("baton.test").warning("ours", url="amqp://u:s3cret@h/", card_token="t")
    err = capsys.readouterr().err
    assert "s3cret" not in err
    lines = [json.loads(line) for line in err.splitlines()]  # every line is JSON
    assert [line["event"][:13] for line in lines] == ["Connection to", "reconnect fai", "ours"]
    first, second, ours = lines
    assert (first["logger"], first["level"]) == ("aio_pika.robust_connection", "info")
    assert f"baton-payment:{MASK}@rabbit" in first["event"]
    assert "timestamp" in first
    assert f"redis://baton-payment:{MASK}@redis" in second["exception"]
    assert (ours["url"], ours["card_token"]) == (f"amqp://u:{MASK}@h/", MASK)
