"""Handlers declared by KIND, resolved against the contracts given when Handlers are built."""

from __future__ import annotations

from typing import ClassVar

import pytest

from baton_sdk import Handlers, MessageContext, handles
from contracts.base import Command, Reply
from contracts.registry import ContractRegistry


class Ship(Command):
    KIND: ClassVar[str] = "test.ship.v1"
    parcel: str


class Shipped(Reply):
    KIND: ClassVar[str] = "test.shipped.v1"
    tracking: str


class Shipper:
    @handles("test.ship.v1")
    async def ship(self, cmd: Ship, ctx: MessageContext) -> Shipped:
        return Shipped(tracking=f"t-{cmd.parcel}")


class Misdeclared:
    @handles("test.shipped.v1")  # a reply, not a command
    async def ship(self, cmd: Ship, ctx: MessageContext) -> Shipped:
        raise AssertionError("never routed")


def test_a_kind_is_routed_to_the_model_the_contracts_hold() -> None:
    handlers = Handlers.of(Shipper(), contracts=ContractRegistry([Ship, Shipped]))
    route = handlers.route(Ship.KIND)
    assert route is not None
    assert route.command is Ship
    assert list(handlers) == [Ship.KIND]


@pytest.mark.parametrize(
    ("service", "contracts", "message"),
    [
        (Shipper(), None, "no contracts given"),
        (Shipper(), ContractRegistry([Shipped]), "not a command contract of the contracts"),
        (Misdeclared(), ContractRegistry([Ship, Shipped]), "'test.shipped.v1' is not a command"),
    ],
)
def test_a_kind_the_contracts_do_not_hold_as_a_command_is_refused_when_built(
    service: object, contracts: ContractRegistry | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Handlers.of(service, contracts=contracts)


def test_a_free_function_may_be_registered_by_kind() -> None:
    handlers = Handlers(ContractRegistry([Ship, Shipped]))

    @handlers.handler("test.ship.v1")
    async def ship(cmd: Ship, ctx: MessageContext) -> Shipped:
        return Shipped(tracking="t")

    route = handlers.route(Ship.KIND)
    assert route is not None
    assert route.handler is ship
    with pytest.raises(ValueError, match="already registered"):
        handlers.register(Ship, ship)  # the class and its KIND are one command
