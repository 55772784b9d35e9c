"""Handlers declared per command type, and the context each one is given."""

from __future__ import annotations

import inspect
import types
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_args, get_origin, get_type_hints

from contracts.base import Command, Contract, Reply, StepFailed
from contracts.envelope import Envelope, Phase

if TYPE_CHECKING:  # only a protocol: no run-time dependency on the registry module
    from contracts.registry import ContractLookup

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


def handles(command: type[Command] | str) -> Callable[[F], F]:
    """Mark a method as the handler of ``command``; the method is returned unchanged.

    ``command`` is a class, or a KIND that ``Handlers.of(..., contracts=...)`` resolves to a
    model: a participant of a saga package handles the models compiled from the package's
    contract files, which exist only once those are loaded, not at import.
    """

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

    def __init__(self, contracts: ContractLookup | None = None) -> None:
        self._routes: dict[str, Route] = {}
        self._contracts = contracts
        # Baton's own reply, and those the handlers declare: what a stored outcome is read as
        self._replies: dict[str, type[Reply]] = {StepFailed.KIND: StepFailed}

    @classmethod
    def of(cls, *services: object, contracts: ContractLookup | None = None) -> Handlers:
        """Collect every ``@handles`` method of the given service objects; a handler marked
        with a KIND gets the model ``contracts`` holds for it."""
        found = cls(contracts)
        for service in services:
            for _, method in inspect.getmembers(service, inspect.ismethod):
                command = getattr(method, _MARK, None)
                if command is not None:
                    found.register(command, method)
        return found

    def register(self, command: type[Command] | str, handler: Handler) -> None:
        """Route ``command`` (a class, or a KIND of ``contracts``) to ``handler``; one
        handler per command type."""
        model = self._model(command)
        if model.KIND in self._routes:
            raise ValueError(f"a handler for {model.KIND} is already registered")
        self._routes[model.KIND] = Route(model, handler)
        for reply in declared_replies(handler):
            self._replies.setdefault(reply.KIND, reply)

    def _model(self, command: type[Command] | str) -> type[Command]:
        if not isinstance(command, str):
            return command
        model = None if self._contracts is None else self._contracts.get(command)
        if model is None or not issubclass(model, Command):
            given = "the contracts given" if self._contracts is not None else "no contracts given"
            raise ValueError(f"{command!r} is not a command contract of {given} to Handlers")
        return model

    def handler(self, command: type[Command] | str) -> Callable[[F], F]:
        """Decorator registering a free function as the handler of ``command``."""

        def register(func: F) -> F:
            self.register(command, func)
            return func

        return register

    def route(self, kind: str) -> Route | None:
        """The route for a command KIND, or None when this participant does not handle it."""
        return self._routes.get(kind)

    def get(self, kind: str) -> type[Contract] | None:
        """The model of ``kind`` for this participant (a ``ContractLookup``: what its commands
        are decoded and its stored replies read with): a handled command's class, a reply a
        handler declares (or Baton's own), else whatever the ``contracts`` given hold."""
        route = self._routes.get(kind)
        if route is not None:
            return route.command
        reply = self._replies.get(kind)
        if reply is not None:
            return reply
        return self._contracts.get(kind) if self._contracts is not None else None

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)


def declared_replies(handler: Handler) -> list[type[Reply]]:
    """The Reply classes a handler's return annotation names (``-> A`` or ``-> A | B``);
    none when it has none or it cannot be resolved (then ``contracts`` must hold them)."""
    try:
        returned = get_type_hints(handler).get("return")
    except Exception:  # a name only imported for type checking: nothing declared
        return []
    union = get_origin(returned) in (Union, types.UnionType)
    options = get_args(returned) if union else (returned,)
    return [
        o
        for o in options  # a bare ``-> Reply`` names no message
        if isinstance(o, type) and issubclass(o, Reply) and getattr(o, "KIND", None)
    ]
