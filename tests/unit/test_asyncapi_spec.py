"""The generated document is valid AsyncAPI 3.0.0, checked against the official JSON Schema
(npm ``@asyncapi/specs``, pinned in tests/asyncapi/package-lock.json)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft7Validator

from baton.asyncapi import BrokerInfo
from contracts.topology import Topology
from tests.support.asyncapi import PACKAGES, document, spec_schema


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    # The bundle without $ids: every $ref is a "#/definitions/..." inside the same file.
    schema = spec_schema()
    assert schema["properties"]["asyncapi"]["const"] == "3.0.0"
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def _errors(validator: Draft7Validator, doc: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in validator.iter_errors(doc)
    ]


@pytest.mark.parametrize(
    ("folders", "topology", "broker"),
    [
        (PACKAGES, Topology(), None),
        ((PACKAGES[0],), Topology(namespace="prod."), BrokerInfo("mq", 5671, "baton", "quorum")),
    ],
    ids=["payment+checkout", "payment-namespaced-quorum"],
)
def test_the_document_is_valid_asyncapi_3(
    validator: Draft7Validator,
    folders: tuple[Any, ...],
    topology: Topology,
    broker: BrokerInfo | None,
) -> None:
    assert _errors(validator, document(folders, topology, broker)) == []


def test_the_validation_would_see_a_broken_document(validator: Draft7Validator) -> None:
    """The schema is strict where Baton could go wrong: bindings, replies, servers."""
    doc = document()
    breakages: dict[str, Callable[[dict[str, Any]], object]] = {
        "binding field": lambda d: d["operations"]["events.publish"]["bindings"]["amqp"]
        .__setitem__("replyTo", "x"),
        "queue and exchange": lambda d: d["channels"]["replies"]["bindings"]["amqp"]
        .__setitem__("exchange", {"name": "baton.replies"}),
        "reply message inline": lambda d: d["operations"]["checkout.v1.start"]["reply"]
        .__setitem__("messages", [{"name": "inline"}]),
        "server protocol": lambda d: d["servers"]["rabbitmq"].pop("protocol"),
        "delivery mode": lambda d: d["operations"]["events.publish"]["bindings"]["amqp"]
        .__setitem__("deliveryMode", 3),
    }  # fmt: skip
    for name, breakage in breakages.items():
        broken = copy.deepcopy(doc)
        breakage(broken)
        assert _errors(validator, broken), name
