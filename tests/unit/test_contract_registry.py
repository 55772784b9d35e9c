"""The contract registry is an object the application fills: Baton's own kinds are always in it,
the same message twice is fine, two shapes for one kind are not."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pytest

from contracts.base import Command, Reply, StepFailed
from contracts.errors import ContractDefinitionError
from contracts.events import SagaEvent
from contracts.registry import ContractRegistry, role_of, shape


class Ping(Command):
    """Say hello."""

    KIND: ClassVar[str] = "test.ping.v1"
    SENSITIVE: ClassVar[frozenset[str]] = frozenset({"who"})
    who: str


class PingAgain(Command):
    """Another class of the same message: only its docstring differs."""

    KIND: ClassVar[str] = "test.ping.v1"
    SENSITIVE: ClassVar[frozenset[str]] = frozenset({"who"})
    who: str


class PingLonger(Command):
    KIND: ClassVar[str] = "test.ping.v1"
    SENSITIVE: ClassVar[frozenset[str]] = frozenset({"who"})
    who: str
    times: int


class PingInClear(Command):
    KIND: ClassVar[str] = "test.ping.v1"
    who: str


class Pong(Reply):
    KIND: ClassVar[str] = "test.pong.v1"


def test_a_new_registry_holds_only_batons_own_kinds() -> None:
    registry = ContractRegistry()
    assert set(registry) == {StepFailed.KIND, SagaEvent.KIND}
    assert registry.get("test.ping.v1") is None
    assert "test.ping.v1" not in registry


def test_registered_models_are_found_by_kind() -> None:
    registry = ContractRegistry([Ping, Pong])
    assert registry.get(Ping.KIND) is Ping
    assert registry.require(Pong.KIND, Reply) is Pong
    assert registry.require(Ping.KIND) is Ping  # any contract
    assert registry.sensitive(Ping.KIND) == frozenset({"who"})
    assert registry.kinds()[-2:] == (Ping.KIND, Pong.KIND)
    assert registry.models()[-2:] == (Ping, Pong)
    assert len(registry) == 4
    with pytest.raises(ContractDefinitionError, match="not a known Reply contract"):
        registry.require(Ping.KIND, Reply)
    with pytest.raises(ContractDefinitionError, match=r"'test\.nope\.v1' is not a known"):
        registry.require("test.nope.v1", Command)
    with pytest.raises(KeyError):
        registry.sensitive("test.nope.v1")


def test_the_same_message_twice_is_fine_and_the_first_model_stays() -> None:
    registry = ContractRegistry([Ping, Ping, PingAgain])
    assert registry.get(Ping.KIND) is Ping
    assert shape(Ping) == shape(PingAgain)


@pytest.mark.parametrize("other", [PingLonger, PingInClear])
def test_two_shapes_for_one_kind_are_refused(other: type[Command]) -> None:
    registry = ContractRegistry([Ping])
    with pytest.raises(ContractDefinitionError, match="different shapes") as caught:
        registry.register(other)
    assert "test_contract_registry.Ping" in str(caught.value)
    assert other.__name__ in str(caught.value)
    with pytest.raises(ContractDefinitionError):
        ContractRegistry([other]).merge(registry)


def test_merge_adds_the_other_registrys_models() -> None:
    merged = ContractRegistry([Ping]).merge(ContractRegistry([Pong]))
    assert merged.get(Pong.KIND) is Pong
    assert merged.get(Ping.KIND) is Ping


def test_only_contract_classes_with_a_kind_register() -> None:
    with pytest.raises(ContractDefinitionError, match="not a contract class"):
        ContractRegistry().register(Command)
    with pytest.raises(ContractDefinitionError, match="not a contract class"):
        ContractRegistry().register(int)  # type: ignore[type-var]  # what the check is for


def test_roles() -> None:
    assert [role_of(m) for m in (Ping, Pong, SagaEvent)] == ["command", "reply", "event"]


@pytest.mark.parametrize(
    "first",
    ["contracts", "contracts.registry", "contracts.compiler", "contracts.json_schema",
     "contracts.errors", "messaging", "messaging.transport.codec", "orchestrator.runtime.packages",
     "baton_sdk"],
)  # fmt: skip
def test_any_module_can_be_imported_first(first: str) -> None:
    """contracts.errors imports messaging, which imports contracts: no cycle may bite."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {first}"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
