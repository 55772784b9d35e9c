"""The lifecycle event of an operator's action, published on the events exchange."""

from __future__ import annotations

from typing import ClassVar, Literal

from contracts.base import Contract


class OperatorActionEvent(Contract):
    """An operator retried, resumed or aborted a saga: applied, ignored or refused.

    Routed ``saga.<saga>.operator_action``. ``seq`` and ``hash`` are the audit entry's
    (``baton audit``): a subscriber that keeps them can tell a rewritten trail later.
    """

    KIND: ClassVar[str] = "baton.operator_action.v1"
    saga_id: str
    saga: str
    event: Literal["operator_action"] = "operator_action"
    action: str
    actor: str
    reason: str
    result: str
    detail: str = ""
    batch_id: str = ""
    seq: int
    hash: str
