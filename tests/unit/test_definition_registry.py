"""What a registered definition version is (its body, digest and contracts), and how an
orchestrator counts the sagas each version still has in flight."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from baton.access import redis_users
from contracts.topology import Topology
from messaging.errors import DefinitionError
from messaging.transport.amqp import Broker
from messaging.trust.signing import ORCHESTRATOR, Keyring
from orchestrator.core.catalog import Catalog
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.runtime.definition_registry import (
    RegisteredDefinition,
    message_kinds,
    registration,
)
from orchestrator.runtime.keys import KeySpace
from orchestrator.runtime.packages import default_package_paths, load_packages
from orchestrator.runtime.runner import Orchestrator
from orchestrator.runtime.store import InMemorySagaStore
from tests.conftest import PARTICIPANTS
from tests.support.sagas import catalog, parse, payment_data, payment_definition
from tests.support.versions import payment_package
from tests.unit.test_least_privilege import glob

CHECKOUT = Path(__file__).resolve().parents[2] / "examples" / "checkout"


def with_retry_reasons(reasons: list[str]) -> SagaDefinition:
    data = payment_data()
    data["steps"][0]["action"]["retry"]["retriable_reasons"] = reasons
    return parse(data)


def test_the_digest_is_the_body_as_written_whatever_the_process() -> None:
    plain = registration(payment_definition())
    data = payment_data()
    data["steps"][0]["kind"] = "compensatable"  # the default, written out
    assert registration(parse(data)).digest == plain.digest
    moved = registration(parse({**payment_data(), "deadline_s": 121}))
    assert moved.digest != plain.digest
    # a set's order follows string hashing, which differs between processes: sorted here
    one, other = with_retry_reasons(["a", "b", "c"]), with_retry_reasons(["c", "a", "b"])
    assert registration(one).digest == registration(other).digest != plain.digest
    assert registration(one).definition["steps"][0]["action"]["retry"]["retriable_reasons"] == [
        "a", "b", "c"
    ]  # fmt: skip


@pytest.mark.parametrize("key", [("payment", 1), ("checkout", 1)])
def test_a_registered_version_parses_back_against_its_own_contracts(key: tuple[str, int]) -> None:
    loaded = load_packages([*default_package_paths(), CHECKOUT]).catalog.get(*key)
    assert loaded is not None
    record = RegisteredDefinition.loads(registration(loaded).dumps())  # as read from Redis
    assert set(record.contracts) == set(message_kinds(loaded))
    back = record.parse()
    assert registration(back).digest == record.digest
    assert [s.name for s in back.steps] == [s.name for s in loaded.steps]
    for kind in message_kinds(loaded):
        assert (
            back.contract(kind).SENSITIVE
            == loaded.contract(kind).SENSITIVE
            == (record.sensitive(kind))
        )


def test_the_summary_names_groups_and_their_branches() -> None:
    checkout = load_packages([*default_package_paths(), CHECKOUT]).catalog.get("checkout", 1)
    assert checkout is not None
    stages = dict(registration(checkout).stages)
    assert stages["prepare"] == ["reserve_inventory", "screen_fraud"]
    assert stages["manual_review"] == ["manual_review"]
    kinds = message_kinds(payment_definition())
    assert kinds[0] == "payments.start_transaction.v1"
    assert "payments.void_authorization.v1" in kinds
    assert len(kinds) == 1 + 4 * 2 + 3 * 2


def test_a_record_with_a_broken_contract_is_a_definition_error() -> None:
    record = json.loads(registration(payment_definition()).dumps())
    record["contracts"]["payments.start_transaction.v1"]["properties"]["amount"] = {"type": "x"}
    with pytest.raises(DefinitionError, match="registered payment v1"):
        RegisteredDefinition.loads(json.dumps(record)).parse()


def test_new_sagas_take_the_newest_version_and_old_ones_keep_theirs(tmp_path: Path) -> None:
    side_by_side = load_packages([payment_package(tmp_path, 1, 2)]).catalog
    newest = side_by_side.for_trigger("payments.start_transaction.v1")
    assert newest is not None
    assert newest.version == 2
    old = side_by_side.get("payment", 1)
    assert old is not None
    assert (old.deadline_s, newest.deadline_s) == (120.0, 150.0)


def a_saga(saga_id: str, version: int, status: SagaStatus) -> SagaState:
    return SagaState(
        saga_id=saga_id, saga="payment", definition_version=version, status=status,
        input={}, steps={}, started_at=1.0, updated_at=1.0,
    )  # fmt: skip


async def test_every_unfinished_saga_of_a_version_not_loaded_refuses_the_start() -> None:
    store = InMemorySagaStore()
    sagas = [("a", 1, SagaStatus.RUNNING), ("b", 1, SagaStatus.FAILED),
             ("c", 1, SagaStatus.COMPLETED), ("d", 2, SagaStatus.COMPENSATING),
             ("e", 3, SagaStatus.COMPENSATED)]  # fmt: skip
    for saga_id, version, status in sagas:
        await store.create(a_saga(saga_id, version, status), (), ())
    assert await store.versions() == {
        ("payment", 1): {SagaStatus.RUNNING: 1, SagaStatus.FAILED: 1},
        ("payment", 2): {SagaStatus.COMPENSATING: 1},
    }
    v3 = parse({**payment_data(), "version": 3})
    broker = cast(Broker, SimpleNamespace(topology=Topology()))
    keyring = Keyring(ORCHESTRATOR, {})

    def replica(loaded: Catalog) -> Orchestrator:
        return Orchestrator(loaded, store, broker, keyring=keyring)

    with pytest.raises(DefinitionError) as refused:
        await replica(catalog(v3)).check_definitions()
    assert "payment v1 (1 running, 1 failed); payment v2 (1 compensating)" in str(refused.value)
    with pytest.raises(DefinitionError, match=r"^sagas in flight use payment v2 \(1 comp"):
        await replica(catalog(payment_definition(), v3)).check_definitions()
    v2 = parse({**payment_data(), "version": 2})
    await replica(catalog(payment_definition(), v2)).check_definitions()  # v3: none in flight


def test_the_orchestrator_user_may_write_the_registry_and_no_participant_may() -> None:
    """The keys sit under ``<ns>baton:``, which the orchestrator's Redis ACL user owns."""
    keys = KeySpace("prod.", 16)
    topology = Topology(namespace="prod.")
    users = {u.name.removeprefix("prod.baton-"): u for u in redis_users(topology, PARTICIPANTS)}
    for key in (keys.definition("payment"), keys.definition_names()):
        assert any(glob(pattern, key) for pattern in users["orchestrator"].keys)
        for name in PARTICIPANTS:
            assert not any(glob(pattern, key) for pattern in users[name].keys), name
