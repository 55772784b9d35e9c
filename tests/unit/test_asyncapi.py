"""The generated AsyncAPI document pairs every command with its reply and has no dangling refs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from baton.asyncapi import asyncapi
from baton.cli import main
from contracts.topology import Topology
from orchestrator.catalog import Catalog
from orchestrator.definition import builtin_definitions


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def document() -> dict[str, Any]:
    return asyncapi(Catalog(builtin_definitions()), Topology())


def test_every_ref_resolves() -> None:
    doc = document()
    for ref in refs(doc):
        assert resolve(doc, ref) is not None, ref


def test_every_step_and_compensation_is_an_operation_with_its_reply() -> None:
    doc = document()
    (payment,) = builtin_definitions()
    for step in payment.steps:
        operation = doc["operations"][f"payment.v1.{step.name}.forward"]
        assert operation["channel"]["$ref"] == f"#/channels/cmd.{step.participant}"
        replies = [m["$ref"] for m in operation["reply"]["messages"]]
        assert f"#/channels/replies/messages/{step.action.reply}" in replies
        has_compensation = f"payment.v1.{step.name}.compensate" in doc["operations"]
        assert has_compensation == (step.compensation is not None)
    assert doc["channels"]["cmd.payment"]["address"] == "baton.cmd.payment"


def test_schema_command_writes_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "asyncapi.json").read_text())
    assert written["asyncapi"] == "3.0.0"
    assert (tmp_path / "schemas" / "StartTransaction.json").exists()
