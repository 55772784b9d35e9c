"""Look up a contract class by its KIND string, the ``type`` property on the wire."""

from __future__ import annotations

from contracts import events, payments
from contracts.base import Contract, StepFailed

_MODULES = (payments, events)


def _collect() -> dict[str, type[Contract]]:
    found: dict[str, type[Contract]] = {StepFailed.KIND: StepFailed}
    for module in _MODULES:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Contract) and "KIND" in vars(value):
                found[value.KIND] = value
    return found


CONTRACTS: dict[str, type[Contract]] = _collect()


def contract_for(kind: str) -> type[Contract] | None:
    """The class registered for ``kind``, or None when the kind is unknown."""
    return CONTRACTS.get(kind)
