"""The bundled saga packages, loaded once per test process: the payment saga's contracts,
its definition and a catalog of it (what ``builtin_definitions`` used to give)."""

from __future__ import annotations

from functools import cache
from typing import Any

from contracts.registry import ContractRegistry
from orchestrator.core.catalog import Catalog
from orchestrator.core.definition import SagaDefinition, parse_definition
from orchestrator.runtime.packages import Packages, default_package_paths, load_packages


@cache
def bundled() -> Packages:
    return load_packages(default_package_paths())


def payment_registry() -> ContractRegistry:
    """The compiled contracts of the bundled packages (what an orchestrator decodes with)."""
    return bundled().registry


def payment_definition() -> SagaDefinition:
    definition = bundled().catalog.get("payment", 1)
    assert definition is not None
    return definition


def payment_data() -> dict[str, Any]:
    """The payment definition as data, to change and parse again."""
    data: dict[str, Any] = payment_definition().model_dump(mode="json", by_alias=True)
    return data


def parse(data: dict[str, Any]) -> SagaDefinition:
    """A definition checked against the bundled contracts."""
    return parse_definition(data, payment_registry())


def catalog(*definitions: SagaDefinition) -> Catalog:
    """A catalog of ``definitions`` (default: the bundled ones) with the bundled contracts."""
    return Catalog(definitions or bundled().definitions, payment_registry())
