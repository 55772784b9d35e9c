"""What the saga store seals before writing and opens after reading; the engine sees neither.

The sensitive fields of a saga's input (its start contract's ``SENSITIVE``) are sealed one
by one, each bound to its saga id and field name; an outbox entry (a command body may carry
a card token or an account) is sealed whole, bound to its entry id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from contracts.base import Contract
from messaging.errors import DefinitionError
from messaging.trust.sealing import Sealer, is_sealed
from orchestrator.core.catalog import Catalog
from orchestrator.core.state import SagaState

# (saga name, definition version) -> the input fields to seal; None: definition unknown.
SensitiveFields = Callable[[str, int], frozenset[str] | None]


def sensitive_fields(catalog: Catalog) -> SensitiveFields:
    """The fields its trigger contract marks sensitive, for each saga the catalog holds.

    The definition's own contracts come first: a version read back from the definition
    registry (``orchestrator.runtime.definition_registry``) is checked against its registered
    ones."""

    def lookup(saga: str, version: int) -> frozenset[str] | None:
        definition = catalog.get(saga, version)
        if definition is None:
            return None
        try:
            model: type[Contract] | None = definition.contract(definition.trigger)
        except KeyError:
            model = catalog.contracts.get(definition.trigger)
        return model.SENSITIVE if model is not None else frozenset()

    return lookup


def _input_context(saga_id: str, name: str) -> str:
    return f"saga:{saga_id}:input:{name}"


def _outbox_context(entry_id: str) -> str:
    return f"outbox:{entry_id}"


class SealedFields:
    """Seals and opens a saga's sensitive input fields and its outbox payloads."""

    __slots__ = ("_fields", "sealer")

    def __init__(self, sealer: Sealer, fields: SensitiveFields) -> None:
        self.sealer = sealer
        self._fields = fields

    def seal_state(self, state: SagaState) -> SagaState:
        """The state to store. A saga whose definition is not loaded is refused, not
        written in clear: nothing would say which of its fields are sensitive."""
        names = self._fields(state.saga, state.definition_version)
        if names is None:
            raise DefinitionError(
                f"{state.saga} v{state.definition_version} is not loaded: cannot seal its input"
            )
        present = names & state.input.keys()
        if not present:
            return state
        sealed: dict[str, Any] = dict(state.input)
        for name in present:
            plain = sealed[name]
            if plain is not None:  # JSON, so any field type round-trips
                text = _json(plain)
                sealed[name] = self.sealer.seal_text(text, _input_context(state.saga_id, name))
        return state.model_copy(update={"input": sealed})

    def open_state(self, state: SagaState) -> SagaState:
        """The state as the engine knows it. Every sealed-looking input value is opened,
        so a field marked sensitive later, or no longer, still reads back."""
        opened: dict[str, Any] | None = None
        for name, value in state.input.items():
            if is_sealed(value):
                opened = opened if opened is not None else dict(state.input)
                text = self.sealer.open_text(value, _input_context(state.saga_id, name))
                opened[name] = _unjson(text)
        if opened is None:
            return state  # stored before sealing existed, or nothing sensitive
        return state.model_copy(update={"input": opened})

    def seal_entry(self, entry_id: str, payload: str) -> str:
        return self.sealer.seal_text(payload, _outbox_context(entry_id))

    def open_entry(self, entry_id: str, stored: str | bytes) -> str:
        text = stored.decode() if isinstance(stored, bytes) else stored
        if not is_sealed(text):
            return text  # written before sealing existed
        return self.sealer.open_text(text, _outbox_context(entry_id))


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _unjson(text: str) -> Any:
    return json.loads(text)
