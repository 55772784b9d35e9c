"""The loaded saga definitions, by trigger (to start) and by name and version (to continue),
and the contracts their messages are read with."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID, uuid5

from contracts.registry import ContractRegistry
from messaging.errors import DefinitionError
from orchestrator.core.definition import SagaDefinition

# Saga ids are derived from the idempotency key, so a repeated start finds the same saga.
_SAGA_ID_NAMESPACE = UUID("8f6f1d1e-3c5b-4b8e-9a54-7c1f0b6f2a10")


def saga_id_for(saga: str, idempotency_key: str) -> str:
    return str(uuid5(_SAGA_ID_NAMESPACE, f"{saga}\x00{idempotency_key}"))


class Catalog:
    """Every version stays loadable: a saga finishes on the version it started with.

    ``contracts`` is the registry the definitions were checked against (``orchestrator.
    packages.load_packages`` fills it): the orchestrator decodes starts and replies with it.
    """

    def __init__(self, definitions: Iterable[SagaDefinition], contracts: ContractRegistry) -> None:
        self.contracts = contracts
        self._by_key: dict[tuple[str, int], SagaDefinition] = {}
        self._latest: dict[str, SagaDefinition] = {}
        for definition in definitions:
            if definition.key in self._by_key:
                raise DefinitionError(f"{definition.name} v{definition.version} loaded twice")
            self._by_key[definition.key] = definition
            current = self._latest.get(definition.trigger)
            if current is not None and current.name != definition.name:
                raise DefinitionError(
                    f"{definition.trigger} starts both {current.name} and {definition.name}"
                )
            if current is None or definition.version > current.version:
                self._latest[definition.trigger] = definition

    def for_trigger(self, kind: str) -> SagaDefinition | None:
        """The newest definition started by messages of ``kind``."""
        return self._latest.get(kind)

    def get(self, name: str, version: int) -> SagaDefinition | None:
        return self._by_key.get((name, version))

    @property
    def participants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for d in self._by_key.values() for p in d.participants))

    def all(self) -> list[SagaDefinition]:
        return list(self._by_key.values())
