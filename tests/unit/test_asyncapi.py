"""The generated AsyncAPI document: every command paired with its reply, every ref resolving,
the AMQP bindings as Baton declares and publishes, servers without credentials."""

from __future__ import annotations

import json
from typing import Any

import pytest

from baton.asyncapi import BrokerInfo, asyncapi_document, leaf_steps
from baton.asyncapi.schemas import refs_in
from contracts.base import StepFailed
from contracts.events import SagaEvent
from contracts.registry import ContractRegistry
from contracts.topology import Topology
from tests.support.asyncapi import PACKAGES, document, packaged, resolve


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document()


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    found = refs_in(doc)
    assert len(found) > 100  # the walk does find them
    for ref in found:
        resolve(doc, ref)
    with pytest.raises(KeyError):
        resolve(doc, "#/components/schemas/Nothing")


def test_every_step_and_compensation_is_an_operation_with_its_reply(doc: dict[str, Any]) -> None:
    _, definitions = packaged()
    steps = 0
    for definition in definitions:
        prefix = f"{definition.name}.v{definition.version}"
        for step in leaf_steps(definition.steps):
            for phase, action in (("forward", step.action), ("compensate", step.compensation)):
                name = f"{prefix}.{step.name}.{phase}"
                if action is None:
                    assert name not in doc["operations"]
                    continue
                operation = doc["operations"][name]
                assert operation["action"] == "send"
                assert operation["channel"] == {"$ref": f"#/channels/cmd.{step.participant}"}
                assert resolve(doc, operation["messages"][0]["$ref"])["$ref"].endswith(
                    f"/{action.command}"
                )
                assert operation["reply"]["channel"] == {"$ref": "#/channels/replies"}
                assert [m["$ref"] for m in operation["reply"]["messages"]] == [
                    f"#/channels/replies/messages/{action.reply}",
                    f"#/channels/replies/messages/{StepFailed.KIND}",
                ]
                steps += 1
    # every step operation is one of these: nothing more, nothing less
    assert steps == sum(name.endswith((".forward", ".compensate")) for name in doc["operations"])
    assert "checkout.v1.reserve_inventory.compensate" in doc["operations"]  # inside a group
    assert doc["channels"]["cmd.payment"]["address"] == "baton.cmd.payment"


def test_operations_use_only_messages_of_their_channels(doc: dict[str, Any]) -> None:
    """AsyncAPI 3: an operation's messages are a subset of its channel's, a reply's of its
    reply channel's (the spec's JSON Schema cannot check this)."""
    for name, operation in doc["operations"].items():
        pairs = [(operation["channel"], operation["messages"])]
        if "reply" in operation:
            pairs.append((operation["reply"]["channel"], operation["reply"]["messages"]))
        for channel, messages in pairs:
            assert messages, name
            for message in messages:
                assert message["$ref"].startswith(channel["$ref"] + "/messages/"), name
                resolve(doc, message["$ref"])


def test_conditions_and_parallel_groups_are_annotated(doc: dict[str, Any]) -> None:
    review = doc["operations"]["checkout.v1.manual_review.forward"]
    assert review["x-baton-when"] == "input.total.minor >= 50000"
    assert doc["operations"]["checkout.v1.screen_fraud.forward"]["x-baton-parallel"] == "prepare"
    assert "x-baton-parallel" not in doc["operations"]["payment.v1.authorize_payment.forward"]


def test_starts_are_received_and_answered_on_the_callers_queue(doc: dict[str, Any]) -> None:
    start = doc["operations"]["checkout.v1.start"]
    assert start["action"] == "receive"
    assert start["messages"] == [{"$ref": "#/channels/start/messages/checkout.place_order.v1"}]
    assert start["reply"]["messages"] == [
        {"$ref": f"#/channels/start.answer/messages/{SagaEvent.KIND}"}
    ]
    answer = doc["channels"]["start.answer"]
    assert answer["address"] is None  # the start's reply_to property names it
    assert answer["bindings"]["amqp"]["exchange"]["type"] == "default"
    start_queue = doc["channels"]["start"]["bindings"]["amqp"]
    assert start_queue["x-bound-to"]["exchange"]["name"] == "baton.start"
    assert start_queue["x-bound-to"]["routingKey"] == "baton.start"


def test_events_channel_is_the_topic_routing_key(doc: dict[str, Any]) -> None:
    events = doc["channels"]["events"]
    assert events["address"] == "saga.{saga}.{event}"
    assert Topology().event_routing_key("checkout", "completed") == "saga.checkout.completed"
    assert events["parameters"]["saga"]["enum"] == ["checkout", "payment", "unknown"]
    assert "rejected" in events["parameters"]["event"]["enum"]
    exchange = events["bindings"]["amqp"]["exchange"]
    assert exchange["name"] == "baton.events"
    assert (exchange["type"], exchange["durable"]) == ("topic", True)


def test_queues_are_declared_as_the_broker_declares_them() -> None:
    ns = Topology(namespace="prod.")
    doc = document(topology=ns, broker=BrokerInfo(queue_type="quorum", vhost="baton"))
    work = doc["channels"]["cmd.inventory"]["bindings"]["amqp"]
    assert work["is"] == "queue"
    assert work["queue"] == {
        "name": "prod.baton.cmd.inventory", "durable": True, "exclusive": False,
        "autoDelete": False, "vhost": "baton",
    }  # fmt: skip
    assert work["x-arguments"] == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "prod.baton.dlx",
        "x-dead-letter-routing-key": "prod.baton.dead.cmd.inventory",
    }
    assert work["x-bound-to"]["exchange"]["name"] == "prod.baton.commands"
    assert work["x-bound-to"]["routingKey"] == "inventory"
    dead = doc["channels"]["dead.cmd.inventory"]
    assert dead["address"] == ns.dead_letter_queue(ns.command_queue("inventory"))
    assert dead["bindings"]["amqp"]["x-arguments"] == {"x-queue-type": "quorum"}
    every = {c["address"] for c in doc["channels"].values() if c["address"]}
    assert set(ns.all_queues(packaged()[1][0].participants)) <= every


def test_commands_are_persistent_and_never_expire(doc: dict[str, Any]) -> None:
    binding = doc["operations"]["payment.v1.authorize_payment.forward"]["bindings"]["amqp"]
    assert binding["deliveryMode"] == 2
    assert binding["ack"] is True
    assert binding["mandatory"] is False
    assert "expiration" not in binding
    assert "x-baton-deadline" in binding["x-expiration"]


def test_messages_name_their_kind_headers_and_correlation(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    command = messages["checkout.reserve_inventory.v1"]
    assert command["bindings"]["amqp"]["messageType"] == "checkout.reserve_inventory.v1"
    assert command["headers"] == {"$ref": "#/components/schemas/baton.headers.command"}
    assert command["payload"] == {"$ref": "#/components/schemas/checkout.reserve_inventory.v1"}
    assert messages[StepFailed.KIND]["headers"]["$ref"].endswith("baton.headers.reply")
    assert messages["checkout.place_order.v1"]["headers"]["$ref"].endswith("baton.headers.start")
    assert messages["checkout.place_order.v1"]["x-baton-sensitive"] == ["address", "customer_id"]
    correlation = resolve(doc, command["correlationId"]["$ref"])
    assert correlation["location"] == "$message.header#/x-baton-saga-id"


def test_the_server_has_no_credentials() -> None:
    broker = BrokerInfo.from_url("amqp://svc:s3cret-pw@rabbit.internal:5671/prod%2Fa", "quorum")
    assert broker == BrokerInfo("rabbit.internal", 5671, "prod/a", "quorum")
    doc = document(broker=broker)
    server = doc["servers"]["rabbitmq"]
    assert (server["protocol"], server["protocolVersion"]) == ("amqp", "0.9.1")
    assert server["variables"]["host"]["default"] == "rabbit.internal"
    assert server["variables"]["vhost"]["default"] == "prod%2Fa"
    assert resolve(doc, server["security"][0]["$ref"])["type"] == "userPassword"
    assert "s3cret" not in json.dumps(doc)
    assert "svc" not in json.dumps(server)
    assert BrokerInfo.from_url("amqp://guest:guest@localhost/") == BrokerInfo("localhost")


def test_the_document_is_the_same_for_the_same_input() -> None:
    registry, definitions = packaged()
    one = asyncapi_document(registry, definitions, Topology())
    two = asyncapi_document(registry, list(reversed(definitions)), Topology())
    assert one == two


def test_a_definition_naming_an_unregistered_kind_is_refused() -> None:
    registry, definitions = packaged((PACKAGES[0],))
    with pytest.raises(KeyError, match=r"payments\.start_transaction\.v1"):
        asyncapi_document(ContractRegistry(), definitions, Topology())
    assert asyncapi_document(registry, definitions, Topology())["operations"]
