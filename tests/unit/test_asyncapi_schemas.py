"""Every JSON Schema resolves: inside the document, and in each file ``baton schema --out``
writes. (A file used to hold ``{"$ref": "#/components/schemas/Money"}``: a ref into a
document it is not part of.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT7, DRAFT202012

from baton.asyncapi import asyncapi_document, schema_files
from baton.asyncapi.schemas import refs_in
from baton.cli import main
from contracts.base import Command, Reply
from contracts.json_schema import compile_json_schema
from contracts.money import Money
from contracts.registry import ContractRegistry, shape
from contracts.topology import Topology
from tests.support.asyncapi import document, packaged

AUTHORIZE = "payments.authorize_payment.v1"
GOOD = {"account_id": "acct-1", "amount": {"minor": 1250, "currency": "EUR"}}
BAD_NESTED = {"account_id": "acct-1", "amount": {"minor": "1250", "currency": "EUR"}}


def unresolved(schema: dict[str, Any]) -> list[str]:
    """The refs of a standalone schema file that name nothing in it."""
    uri = "urn:baton:schema-file"
    resolver = Registry().with_resource(uri, DRAFT202012.create_resource(schema)).resolver(uri)
    bad = []
    for ref in refs_in(schema):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            bad.append(ref)
    return bad


def test_the_check_sees_a_dangling_ref() -> None:
    dangling = {"properties": {"amount": {"$ref": "#/components/schemas/Money"}}}
    assert unresolved(dangling) == ["#/components/schemas/Money"]


def test_every_written_file_is_self_contained() -> None:
    files = schema_files(document())
    assert AUTHORIZE + ".json" in files
    for name, schema in files.items():
        assert unresolved(schema) == [], name
        Draft202012Validator.check_schema(schema)
    authorize = files[AUTHORIZE + ".json"]
    assert authorize["properties"]["amount"]["$ref"] == "#/$defs/Money"
    validator = Draft202012Validator(authorize)
    validator.validate(GOOD)
    with pytest.raises(ValidationError, match="'1250' is not of type 'integer'"):
        validator.validate(BAD_NESTED)  # checked inside Money: the $ref was followed


def test_the_payloads_resolve_inside_the_document() -> None:
    doc = document()
    uri = "urn:baton:asyncapi"
    registry = Registry().with_resource(uri, DRAFT7.create_resource(doc))
    payload = doc["components"]["messages"][AUTHORIZE]["payload"]["$ref"]
    validator = Draft7Validator({"$ref": uri + payload}, registry=registry)
    validator.validate(GOOD)
    assert not validator.is_valid(BAD_NESTED)


def test_package_contract_files_compile_back_to_the_same_contract() -> None:
    """A file `baton schema` writes for a package's contract is that contract's
    ``*.schema.json`` form: the compiler reads it back to the same shape."""
    registry, _ = packaged()
    files = schema_files(document())
    compiled = 0
    for name, schema in files.items():
        kind = schema.get("x-baton-kind")
        if kind is None or kind.startswith("baton."):  # Baton's own kinds are not a package's
            continue
        model = compile_json_schema(schema, name)
        original = registry.get(kind)
        assert original is not None
        assert shape(model) == shape(original), name
        compiled += 1
    assert compiled >= 30


class Node(Money):
    """Nested types may be recursive: the file's root gets a name under $defs."""

    children: tuple[Node, ...] = ()


class Plant(Command):
    KIND: ClassVar[str] = "test.plant.v1"
    tree: Node


class Planted(Reply):
    KIND: ClassVar[str] = "test.planted.v1"


def test_a_recursive_type_resolves_in_its_own_file() -> None:
    doc = asyncapi_document(ContractRegistry([Plant, Planted]), [], Topology())
    files = schema_files(doc)
    assert files["Node.json"]["$defs"]["Node"]["properties"]["children"]["items"] == {
        "$ref": "#/$defs/Node"
    }
    for name, schema in files.items():
        assert unresolved(schema) == [], name
    tree = {"minor": 1, "currency": "EUR", "children": [{"minor": 2, "currency": "EUR"}]}
    Draft202012Validator(files["test.plant.v1.json"]).validate({"tree": tree})
    bad = {**tree, "children": [{"minor": 0, "currency": "EUR"}]}  # deep in the recursion
    with pytest.raises(ValidationError, match="less than or equal to the minimum of 0"):
        Draft202012Validator(files["test.plant.v1.json"]).validate({"tree": bad})


def test_schema_command_writes_resolving_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "asyncapi.json").read_text())
    assert written["asyncapi"] == "3.0.0"
    files = sorted((tmp_path / "schemas").glob("*.json"))
    assert len(files) == len(written["components"]["schemas"])
    for file in files:
        schema = json.loads(file.read_text())
        assert unresolved(schema) == [], file.name
    authorize = json.loads((tmp_path / "schemas" / f"{AUTHORIZE}.json").read_text())
    Draft202012Validator(authorize).validate(GOOD)
    assert not Draft202012Validator(authorize).is_valid(BAD_NESTED)
