"""The base classes every message body derives from."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.pan import FreeText, ScrubbedText


class Contract(BaseModel):
    """A message body. Immutable; unknown fields are ignored so producers can add fields.

    ``KIND`` is ``<context>.<name>.v<N>``; a breaking change gets a new N. ``SENSITIVE``
    names fields that must never reach logs, history or metrics.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
    KIND: ClassVar[str]
    SENSITIVE: ClassVar[frozenset[str]] = frozenset()

    def redacted(self) -> dict[str, object]:
        """The body as a dict with sensitive fields masked, for logs and history."""
        data = self.model_dump(mode="json")
        for name in self.SENSITIVE & data.keys():
            data[name] = "***"
        return data


class Command(Contract):
    """Something the orchestrator asks a participant to do."""


class Reply(Contract):
    """A participant's answer to a command."""


class StepFailed(Reply):
    """The command did not take effect.

    ``retriable`` false is a business refusal (the engine compensates); true is a
    technical failure (the engine retries under the step's policy). A participant only
    sends this when its handler changed nothing.
    """

    KIND: ClassVar[str] = "baton.step_failed.v1"
    # Built from exception text we do not control: a card number in it is masked, not refused.
    reason: Annotated[ScrubbedText, Field(min_length=1, max_length=200)]
    retriable: bool = False
    detail: Annotated[ScrubbedText, Field(max_length=2000)] = ""


class Start(Contract):
    """A message that starts a saga. ``idempotency_key`` makes a repeated start harmless."""

    idempotency_key: Annotated[FreeText, Field(min_length=1, max_length=200)]
