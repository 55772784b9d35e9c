"""The checkout package holds together: manifest, definition, contracts, participants, samples."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
import yaml

from contracts.base import Command, Start
from examples.checkout import PACKAGE_DIR
from examples.checkout.invariants import check
from examples.checkout.models import checkout_contracts
from examples.checkout.participants import PARTICIPANTS
from examples.checkout.seed import CheckoutWorld
from orchestrator.runtime.packages import SagaPackage, load_package

NODE_PARTICIPANTS = {"shipping"}


@pytest.fixture(scope="module")
def package() -> SagaPackage:
    return load_package(PACKAGE_DIR)


def test_the_package_loads_its_definition_against_its_contracts(package: SagaPackage) -> None:
    assert package.name == "checkout"
    assert [d.key for d in package.definitions] == [("checkout", 1)]
    assert {m.KIND for m in package.contracts} <= set(checkout_contracts().kinds())
    assert package.invariants() is check


def test_every_python_participant_of_the_saga_is_bundled_and_handles_its_steps(
    package: SagaPackage,
) -> None:
    """Each step's command and compensation reach a participant that handles them."""
    (definition,) = package.definitions
    assert set(definition.participants) == set(PARTICIPANTS) | NODE_PARTICIPANTS
    redis = aioredis.Redis()  # never connected: building handlers only registers scripts
    handled = {name: set(package.participant(name)(redis, "x.")) for name in PARTICIPANTS}
    assert handled == {name: set(factory(redis, "x.")) for name, factory in PARTICIPANTS.items()}
    for step in definition.steps:
        if step.participant in NODE_PARTICIPANTS:
            continue
        sent = {step.action.command} | ({step.compensation.command} if step.compensation else set())
        assert sent <= handled[step.participant], step.name
    node = {"checkout.create_shipment.v1", "checkout.cancel_shipment.v1"}
    commands = {m.KIND for m in checkout_contracts().models() if issubclass(m, Command)}
    assert set().union(*handled.values()) | node == commands  # every command has a handler
    assert sum(map(len, handled.values())) + len(node) == len(commands)  # and only one


def test_the_conformance_samples_are_valid_messages_of_the_package() -> None:
    data = yaml.safe_load((PACKAGE_DIR / "conformance.yaml").read_text())
    registry = checkout_contracts()
    assert set(data["participants"]) == set(PARTICIPANTS) | NODE_PARTICIPANTS
    for name, subject in data["participants"].items():
        for sample in filter(None, (subject["command"], subject.get("compensation"))):
            model = registry.require(sample["kind"], Command)
            model.model_validate(sample["body"])  # raises if the sample drifted
            assert all(registry.get(kind) is not None for kind in sample["replies"]), name


def test_the_seeded_orders_are_valid_starts() -> None:
    world = CheckoutWorld(run_id="t", currency="EUR", skus=["sku-000"], customers=["c-1"],
                          stock=1, balance_minor=1)  # fmt: skip
    for fails_at in (None, "inventory", "fraud", "review", "payment"):
        start = world.place_order(1, fails_at=fails_at)
        assert isinstance(start, Start)


def test_the_readme_names_every_key_prefix_the_code_uses() -> None:
    readme = (PACKAGE_DIR / "README.md").read_text()
    for prefix in ("checkout:inventory:{stock}:", "checkout:payment:{wallet}:",
                   "checkout:notification:{outbox}:", "checkout:shipment:{"):  # fmt: skip
        assert prefix in readme
