"""Helpers of the AsyncAPI tests: the document of real saga packages, refs, the official spec."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from baton.asyncapi import BrokerInfo, asyncapi_document
from contracts.compiler import load_contracts
from contracts.registry import ContractRegistry
from contracts.topology import Topology
from orchestrator.core.definition import SagaDefinition, load_definition

ROOT = Path(__file__).resolve().parents[2]
# The bundled payment package and the checkout example: parallel groups, conditions, queries.
PACKAGES = (ROOT / "sagas" / "payment", ROOT / "examples" / "checkout")
SPEC_DIR = ROOT / "tests" / "asyncapi"  # package.json pins @asyncapi/specs
SPEC = SPEC_DIR / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json"


def packaged(
    folders: tuple[Path, ...] = PACKAGES,
) -> tuple[ContractRegistry, list[SagaDefinition]]:
    """The folders' contracts in one registry and their definitions checked against it."""
    registry = ContractRegistry()
    for folder in folders:
        for model in load_contracts(folder / "contracts"):
            registry.register(model)
    definitions = [
        load_definition(file, registry)
        for folder in folders
        for file in sorted((folder / "definitions").glob("*.yaml"))
    ]
    return registry, definitions


def document(
    folders: tuple[Path, ...] = PACKAGES,
    topology: Topology | None = None,
    broker: BrokerInfo | None = None,
) -> dict[str, Any]:
    registry, definitions = packaged(folders)
    return asyncapi_document(registry, definitions, topology or Topology(), broker)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """The node a local ref names (RFC 6901); KeyError when it names nothing."""
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            raise KeyError(ref)
        node = node[key]
    return node


def spec_schema() -> dict[str, Any]:
    """The official AsyncAPI 3.0.0 JSON Schema, from the pinned npm package.

    Installed on first use with ``npm ci`` (the lockfile pins it); without npm the caller
    is skipped, saying so.
    """
    if not SPEC.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot fetch @asyncapi/specs (tests/asyncapi)")
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=SPEC_DIR,
            check=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    schema: dict[str, Any] = json.loads(SPEC.read_text())
    return schema
