"""The contracts an application knows, by KIND: an object it fills, not a module-level list.

Baton's core names no saga's messages. An orchestrator fills a registry from the saga
packages it loads (``orchestrator.runtime.packages``); a participant from the classes its handlers
declare. Every registry holds Baton's own kinds (``StepFailed``, ``SagaEvent``).

Registering a kind twice is fine when both models have the same *shape* (role, KIND,
SENSITIVE and JSON Schema, titles and descriptions aside): a participant's typed class and
the package's compiled model of the same message may meet. Two shapes for one kind is an
error: the two sides of the wire would read the message differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar, overload

from contracts.base import Command, Contract, Reply, Start, StepFailed
from contracts.errors import ContractDefinitionError
from contracts.events import SagaEvent

C = TypeVar("C", bound=Contract)

BUILTIN: tuple[type[Contract], ...] = (StepFailed, SagaEvent)
ROLES: tuple[tuple[str, type[Contract]], ...] = (
    ("start", Start), ("command", Command), ("reply", Reply)
)  # fmt: skip
# Keys of a JSON Schema whose values map names to schemas: names there are data, not keywords.
_NAMED_SCHEMAS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
_PROSE = frozenset({"title", "description"})


class ContractLookup(Protocol):
    """What decoding needs: the model of a KIND, or None when the kind is unknown."""

    def get(self, kind: str) -> type[Contract] | None: ...


def role_of(model: type[Contract]) -> str:
    """``start``, ``command``, ``reply``, or ``event`` for any other contract."""
    return next((name for name, base in ROLES if issubclass(model, base)), "event")


def _plain(schema: Any, *, named: bool = False) -> Any:
    """``schema`` without titles, descriptions and Baton's ``x-baton-*`` marks: they say
    nothing a JSON Schema validator checks."""
    if isinstance(schema, dict):
        if named:
            return {name: _plain(value) for name, value in schema.items()}
        return {
            key: _plain(value, named=key in _NAMED_SCHEMAS)
            for key, value in schema.items()
            if key not in _PROSE and not key.startswith("x-baton-")
        }
    if isinstance(schema, list):
        return [_plain(value) for value in schema]
    return schema


def shape(model: type[Contract]) -> dict[str, Any]:
    """What must agree for two models to be the same contract: role, KIND, SENSITIVE and the
    JSON Schema without prose. (Validators are not in a schema: a PAN check is not compared;
    tests/unit/test_payment_contracts.py compares the payment saga's by behaviour, too.)"""
    return {
        "role": role_of(model),
        "kind": model.KIND,
        "sensitive": sorted(model.SENSITIVE),
        "schema": _plain(model.model_json_schema()),
    }


def _source(model: type[Contract]) -> str:
    """Where a model comes from, for error messages: its contract file, else its class."""
    source = getattr(model, "__baton_source__", "")
    return str(source) if source else f"{model.__module__}.{model.__qualname__}"


class ContractRegistry:
    """Contract models by KIND; starts with Baton's own (``StepFailed``, ``SagaEvent``)."""

    def __init__(self, models: Iterable[type[Contract]] = ()) -> None:
        self._models: dict[str, type[Contract]] = {}
        for model in (*BUILTIN, *models):
            self.register(model)

    def register(self, model: type[C]) -> type[C]:
        """Add ``model``; the same kind again with the same shape keeps the first model."""
        kind = getattr(model, "KIND", None)
        if not isinstance(model, type) or not issubclass(model, Contract) or not kind:
            raise ContractDefinitionError("not a contract class with a KIND", source=repr(model))
        existing = self._models.get(kind)
        if existing is None:
            self._models[kind] = model
            return model
        if existing is not model and shape(existing) != shape(model):
            raise ContractDefinitionError(
                f"registered twice with different shapes: {_source(existing)} and {_source(model)}",
                message=kind,
            )
        return model

    def merge(self, other: ContractRegistry) -> ContractRegistry:
        """Register every model of ``other`` here; returns this registry."""
        for model in other.models():
            self.register(model)
        return self

    def get(self, kind: str) -> type[Contract] | None:
        """The model of ``kind``, or None when it is unknown."""
        return self._models.get(kind)

    @overload
    def require(self, kind: str) -> type[Contract]: ...

    @overload
    def require(self, kind: str, base: type[C]) -> type[C]: ...

    def require(self, kind: str, base: type[Contract] = Contract) -> type[Contract]:
        """The model of ``kind``, which must derive from ``base`` (any contract when not
        given); ContractDefinitionError else."""
        model = self._models.get(kind)
        if model is None or not issubclass(model, base):
            raise ContractDefinitionError(
                f"{kind!r} is not a known {base.__name__} contract", message=kind
            )
        return model

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._models)

    def models(self) -> tuple[type[Contract], ...]:
        """Each registered model once, in registration order."""
        return tuple(self._models.values())

    def sensitive(self, kind: str) -> frozenset[str]:
        """The fields of ``kind`` never to log or store in clear; KeyError for an unknown kind."""
        return self._models[kind].SENSITIVE

    def __contains__(self, kind: object) -> bool:
        return kind in self._models

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def __repr__(self) -> str:
        return f"ContractRegistry({len(self._models)} kinds)"
