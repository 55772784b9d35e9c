"""What the AsyncAPI document reads from a registry and from saga definitions.

Protocols rather than the concrete classes: the document needs a few attributes, and any
registry or definition with them (``ContractRegistry``, ``SagaDefinition``) will do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from contracts.base import Contract


class Contracts(Protocol):
    """What the document needs of a contract registry (``ContractRegistry`` is one)."""

    def get(self, kind: str) -> type[Contract] | None: ...

    def models(self) -> Iterable[type[Contract]]: ...


class ActionLike(Protocol):
    @property
    def command(self) -> str: ...

    @property
    def reply(self) -> str: ...


class StepLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def participant(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def action(self) -> ActionLike: ...

    @property
    def compensation(self) -> ActionLike | None: ...


class DefinitionLike(Protocol):
    """A saga definition as the document reads it (``SagaDefinition`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def trigger(self) -> str: ...

    @property
    def steps(self) -> Sequence[Any]: ...


def leaf_steps(items: Iterable[Any]) -> Iterator[StepLike]:
    """Every step that sends a command, parallel groups opened (``steps`` or ``parallel``)."""
    for item in items:
        if hasattr(item, "participant"):
            yield item
        else:
            group = getattr(item, "parallel", item)
            yield from leaf_steps(getattr(group, "steps", ()))


def placement(definition: DefinitionLike, step: StepLike) -> dict[str, str]:
    """``x-baton-when`` (its condition, or its group's) and ``x-baton-parallel`` (its group)."""
    stage_of = getattr(definition, "stage_of", None)
    stage = stage_of(step.name) if callable(stage_of) else None
    when = getattr(step, "when", None) or getattr(stage, "when", None)
    placement: dict[str, str] = {}
    if when is not None:
        placement["x-baton-when"] = str(getattr(when, "text", when))
    if stage is not None and len(getattr(stage, "steps", ())) > 1:
        placement["x-baton-parallel"] = str(stage.name)
    return placement


def pointer(*parts: str) -> str:
    """A local JSON Pointer ref (RFC 6901 escapes, though Baton's names never need them)."""
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def ref(*parts: str) -> dict[str, str]:
    return {"$ref": pointer(*parts)}
