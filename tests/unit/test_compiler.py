"""Contracts as data: the YAML and JSON Schema forms compile to the models Baton runs on, and
anything not understood is refused with the file, message and field it is in."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from contracts.base import Command, Reply, Start
from contracts.compiler import compile_yaml, load_contracts
from contracts.errors import ContractDefinitionError
from contracts.json_schema import compile_json_schema, contract_json_schema
from contracts.registry import shape
from messaging.errors import DefinitionError
from tests.support.sagas import payment_registry

PAN = "4111111111111111"
SHOP = """
types:
  OrderId: {type: string, pattern: "^[a-z0-9-]{1,32}$"}
  Token: {type: string, pattern: "^tok_[A-Za-z0-9]{8,64}$", refuse_pan: true}
  SecretToken: {type: Token}
messages:
  shop.place_order.v1:
    role: start
    doc: A customer places an order.
    fields:
      order_id: OrderId
      token: {type: SecretToken, sensitive: true}
      total: {type: money}
      note: {type: text, max_length: 20, default: ""}
      gift: {type: boolean, default: false}
      tier: {type: enum, values: [gold, silver]}
      lines: {type: list, items: {type: integer, minimum: 1}, max_items: 3}
      extra: {type: object, optional: true}
      ratio: {type: number, minimum: 0, maximum: 1, optional: true}
  shop.reserve.v1:
    role: command
    fields:
      order_id: {type: OrderId}
  shop.reserved.v2:
    role: reply
    fields:
      reservation_id: id
"""


def shop() -> dict[str, Any]:
    return {m.KIND: m for m in compile_yaml(yaml.safe_load(SHOP), "shop.yaml")}


def an_order(**changes: Any) -> dict[str, Any]:
    order = {
        "idempotency_key": "k-1", "order_id": "o-1", "token": "tok_abcdefgh",
        "total": {"minor": 100, "currency": "EUR"}, "tier": "gold", "lines": [1, 2],
    }  # fmt: skip
    return {**order, **changes}


def test_messages_compile_to_the_base_classes_with_kind_and_sensitive() -> None:
    models = shop()
    start, command, reply = (models[k] for k in ("shop.place_order.v1", "shop.reserve.v1",
                                                 "shop.reserved.v2"))  # fmt: skip
    assert issubclass(start, Start)
    assert issubclass(command, Command)
    assert issubclass(reply, Reply)
    assert (start.__name__, reply.__name__) == ("PlaceOrder", "ReservedV2")
    assert frozenset({"token"}) == start.SENSITIVE
    assert start.__doc__ == "A customer places an order."
    assert start.model_config["frozen"]
    assert start.model_config["extra"] == "ignore"


def test_field_types_defaults_and_optionals() -> None:
    model = shop()["shop.place_order.v1"]
    order = model.model_validate(an_order(unknown="ignored"))
    assert order.model_dump(mode="json") == {
        **an_order(), "note": "", "gift": False, "extra": None, "ratio": None,
    }  # fmt: skip
    assert model.model_json_schema()["required"] == [
        "idempotency_key", "order_id", "token", "total", "tier", "lines",
    ]  # fmt: skip
    with pytest.raises(ValidationError):
        order.model_copy().__setattr__("note", "x")  # frozen


@pytest.mark.parametrize(
    "changes",
    [
        {"order_id": "UPPER"},  # pattern
        {"token": "tok_" + PAN},  # refuse_pan, through two named types
        {"note": f"my card {PAN}"},  # text refuses a card number
        {"note": "x" * 21},  # max_length
        {"tier": "bronze"},  # enum
        {"lines": [0]},  # item minimum
        {"lines": [1, 2, 3, 4]},  # max_items
        {"total": {"minor": 1, "currency": "XXX"}},  # money
        {"ratio": 1.5},  # maximum
        {"extra": [1]},  # object
    ],
)
def test_constraints_hold(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        shop()["shop.place_order.v1"].model_validate(an_order(**changes))


def test_an_issued_id_is_not_scanned_for_card_numbers() -> None:
    reply = shop()["shop.reserved.v2"]
    assert reply.model_validate({"reservation_id": f"r_{PAN}"}).model_dump() == {
        "reservation_id": f"r_{PAN}"
    }
    with pytest.raises(ValidationError):
        reply.model_validate({"reservation_id": ""})


def test_redacted_masks_the_sensitive_fields() -> None:
    order = shop()["shop.place_order.v1"].model_validate(an_order())
    assert order.redacted()["token"] == "***"
    assert order.redacted()["order_id"] == "o-1"


def _broken(text: str) -> str:
    return f"messages:\n  shop.x.v1:\n    role: command\n    fields:\n      {text}\n"


@pytest.mark.parametrize(
    ("source", "where", "problem"),
    [
        (_broken("a: {type: strnig}"), "shop.x.v1: field a", "unknown type 'strnig'"),
        (_broken("a: {type: string, max_lenght: 3}"), "field a", "string takes no max_lenght"),
        (_broken("a: {type: integer, minimum: one}"), "field a", "minimum of an integer"),
        (_broken("a: {type: string, pattern: '('}"), "field a", "does not compile"),
        (_broken("a: {type: enum, values: []}"), "field a", "non-empty list"),
        (_broken("a: {type: list}"), "field a", "needs items"),
        (_broken("a: {type: integer, default: x}"), "field a", "default 'x' is not valid"),
        (_broken("a: {type: text, sensitive: yes-please}"), "field a", "true or false"),
        (_broken("Bad-Name: {type: text}"), "field Bad-Name", "lower_snake_case"),
        (_broken("a: {type: id, max_length: 3}"), "field a", "id takes no max_length"),
        (_broken("a: {type: text, colour: red}"), "field a", "text takes no colour"),
        ("messages:\n  shop.x.v1: {role: event}\n", "shop.x.v1", "role 'event'"),
        ("messages:\n  shop.x.v1: {role: reply, fileds: {}}\n", "shop.x.v1", "unknown key"),
        ("messages:\n  Shop.X: {role: reply}\n", "Shop.X", "is not <context>.<name>.v<N>"),
        ("messages:\n  baton.x.v1: {role: reply}\n", "baton.x.v1", "Baton's own"),
        ("message: {}\n", "shop.yaml", "unknown key(s) message"),
        ("types:\n  A: {type: A}\n", "types.A", "refers to itself"),
        (
            "messages:\n  shop.s.v1: {role: start, fields: {idempotency_key: text}}\n",
            "shop.s.v1",
            "defined by Baton",
        ),
    ],
)
def test_a_broken_contract_names_where_it_broke(source: str, where: str, problem: str) -> None:
    with pytest.raises(ContractDefinitionError) as caught:
        compile_yaml(yaml.safe_load(source), "shop.yaml")
    assert isinstance(caught.value, DefinitionError)  # refused like a broken definition
    assert "shop.yaml" in str(caught.value)
    assert where in str(caught.value)
    assert problem in str(caught.value)


ORDERED = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "OrderShipped",
    "description": "The warehouse shipped an order.",
    "type": "object",
    "x-baton-kind": "shop.order_shipped.v1",
    "x-baton-role": "reply",
    "x-baton-sensitive": ["address"],
    "properties": {
        "parcel": {"type": "string", "pattern": "^p-[0-9]+$", "description": "carrier's id"},
        "address": {"type": "string", "maxLength": 50, "x-baton-type": "text"},
        "cost": {"$ref": "#/$defs/Money"},
        "carrier": {"enum": ["dhl", "ups"], "default": "dhl"},
        "weight": {"type": "integer", "minimum": 1, "maximum": 1000},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "maxItems": 2},
        "signed": {"type": "boolean"},
    },
    "required": ["parcel", "address", "cost", "weight"],
    "$defs": {
        "Money": {"type": "object", "properties": {"minor": {"type": "integer"}}},
        "Tag": {"type": "string", "maxLength": 8},
    },
}


def test_a_json_schema_file_compiles_to_one_message() -> None:
    model = compile_json_schema(ORDERED, "order_shipped.schema.json")
    assert issubclass(model, Reply)
    assert (model.KIND, model.__name__) == ("shop.order_shipped.v1", "OrderShipped")
    assert frozenset({"address"}) == model.SENSITIVE
    body = {"parcel": "p-1", "address": "Main St 1", "cost": {"minor": 5, "currency": "EUR"},
            "weight": 3}  # fmt: skip
    shipped = model.model_validate(body)
    assert shipped.model_dump(mode="json") == {
        **body, "carrier": "dhl", "note": None, "tags": None, "signed": None,
    }  # fmt: skip
    for bad in ({"address": f"card {PAN}"}, {"tags": ["x" * 9]}, {"carrier": "fedex"},
                {"cost": {"minor": 0, "currency": "EUR"}}, {"weight": 0}):  # fmt: skip
        with pytest.raises(ValidationError):
            model.model_validate({**body, **bad})


def _only(node: dict[str, Any]) -> dict[str, Any]:
    """A schema of one property ``a``."""
    return {"properties": {"a": node}, "required": [], "x-baton-sensitive": []}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"x-baton-role": "event"}, "role 'event'"),
        ({"x-baton-kind": "nope"}, "not <context>.<name>.v<N>"),
        ({"additionalProperties": False}, "ignores unknown properties"),
        ({"required": ["ghost"]}, "required must list property names"),
        ({"x-baton-sensitive": ["ghost"]}, "x-baton-sensitive must list"),
        ({"oneOf": []}, "unsupported top-level keyword(s) oneOf"),
        (_only({"type": "string", "format": "email"}), "keyword(s) format"),
        (_only({"$ref": "#/$defs/Nope"}), "does not name a $def"),
        (_only({"type": "object", "properties": {"b": {}}}), "free mapping"),
        ({**_only({"type": "string", "default": "x"}), "required": ["a"]}, "has no use for"),
        (_only({"anyOf": [{"type": "string"}, {"type": "integer"}]}), "anyOf is only"),
        (_only({"type": ["string", "integer"]}), "only one type"),
    ],
)
def test_a_json_schema_contract_with_what_baton_cannot_check_is_refused(
    change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ContractDefinitionError, match=re.escape(problem)):
        compile_json_schema({**ORDERED, **change}, "x.schema.json")


def test_what_contract_json_schema_writes_compiles_back_to_the_same_contract() -> None:
    for model in payment_registry().models():
        if model.KIND.startswith("baton."):
            continue
        written = json.loads(json.dumps(contract_json_schema(model)))
        assert written["x-baton-kind"] == model.KIND
        again = compile_json_schema(written, f"{model.__name__}.schema.json")
        assert shape(again) == shape(model)
        assert again.model_json_schema() == model.model_json_schema()  # marks included


def test_a_folder_of_both_forms_loads_and_a_kind_defined_twice_is_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "shop.yaml").write_text(SHOP)
    (tmp_path / "shipped.schema.json").write_text(json.dumps(ORDERED))
    (tmp_path / "README.md").write_text("not a contract")
    kinds = sorted(m.KIND for m in load_contracts(tmp_path))
    assert kinds == sorted([*shop(), "shop.order_shipped.v1"])
    (tmp_path / "again.yaml").write_text("messages:\n  shop.reserve.v1: {role: command}\n")
    with pytest.raises(ContractDefinitionError, match="defined again"):
        load_contracts(tmp_path)
    with pytest.raises(ContractDefinitionError, match="no such contracts folder"):
        load_contracts(tmp_path / "missing")
    (tmp_path / "again.yaml").write_text("messages: [unclosed")
    with pytest.raises(ContractDefinitionError, match=r"again\.yaml"):
        load_contracts(tmp_path)
