"""Handlers declared per command type, and the context each one is given."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from contracts.base import Command, Reply
from contracts.envelope import Envelope, Phase

Handler = Callable[[Any, "MessageContext"], Awaitable[Reply]]
F = TypeVar("F", bound=Callable[..., Awaitable[Reply]])

_MARK = "__baton_handles__"


@dataclass(frozen=True, slots=True)
class MessageContext:
    """Where a command sits in its saga: what a handler needs to be idempotent and traceable.

    ``effect_id`` is stable across retries (the idempotency key); ``compensates`` is the
    forward effect id a compensation undoes; ``attempt`` changes on every retry.
    """

    saga_id: str
    saga: str
    step: str
    phase: Phase
    effect_id: str
    compensates: str
    attempt: int
    traceparent: str
    message_id: str

    @classmethod
    def of(cls, envelope: Envelope) -> MessageContext:
        """The context of one decoded command."""
        return cls(
            saga_id=envelope.saga_id,
            saga=envelope.saga,
            step=envelope.step,
            phase=envelope.phase,
            effect_id=envelope.effect_id,
            compensates=envelope.compensates,
            attempt=envelope.attempt,
            traceparent=envelope.traceparent,
            message_id=envelope.message_id,
        )

    @property
    def trace_id(self) -> str:
        """The W3C trace id (``00-<trace>-<span>-<flags>``), or "" when absent or malformed."""
        parts = self.traceparent.split("-")
        return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


def handles(command: type[Command]) -> Callable[[F], F]:
    """Mark a method as the handler of ``command``; the method is returned unchanged."""

    def mark(func: F) -> F:
        setattr(func, _MARK, command)
        return func

    return mark


@dataclass(frozen=True, slots=True)
class Route:
    """The command class a handler accepts, and the handler."""

    command: type[Command]
    handler: Handler


class Handlers:
    """A participant's handlers, looked up by the command's KIND.

    The SDK contract: a handler must be idempotent by ``ctx.effect_id``. The worker never
    runs two deliveries of one effect (nor a compensation and the command it undoes) at the
    same time, but it records the outcome only *after* the handler returns, so a crash in
    between runs the handler again for the same effect. Raise ``StepRejected`` for a
    business refusal (and change nothing); ``TransientError`` (or a Redis connection error)
    for an infrastructure hiccup: the command is redelivered, unanswered. Any other
    exception is a bug, answered as a retriable ``internal_error``.
    """

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    @classmethod
    def of(cls, *services: object) -> Handlers:
        """Collect every ``@handles`` method of the given service objects."""
        found = cls()
        for service in services:
            for _, method in inspect.getmembers(service, inspect.ismethod):
                command = getattr(method, _MARK, None)
                if command is not None:
                    found.register(command, method)
        return found

    def register(self, command: type[Command], handler: Handler) -> None:
        """Route ``command`` to ``handler``; one handler per command type."""
        if command.KIND in self._routes:
            raise ValueError(f"a handler for {command.KIND} is already registered")
        self._routes[command.KIND] = Route(command, handler)

    def handler(self, command: type[Command]) -> Callable[[F], F]:
        """Decorator registering a free function as the handler of ``command``."""

        def register(func: F) -> F:
            self.register(command, func)
            return func

        return register

    def route(self, kind: str) -> Route | None:
        """The route for a command KIND, or None when this participant does not handle it."""
        return self._routes.get(kind)

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)
