"""Saga definitions as data: pydantic models loaded from YAML and checked on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.base import Command, Reply, Start
from contracts.registry import contract_for
from messaging.errors import DefinitionError

StepKind = Literal["compensatable", "pivot", "retriable"]


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter. Jitter comes from the caller: the engine stays pure.

    A step gives up only when both budgets are spent: ``max_attempts`` published attempts
    *and* ``give_up_after_s`` seconds since its first send in that phase. Counting attempts
    alone let a short outage (every attempt timing out while a participant's Redis was
    down) change a saga's outcome; the time budget says how long an outage may last.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=1000)
    give_up_after_s: float = Field(default=30.0, ge=0)
    initial_backoff_s: float = Field(default=0.1, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_backoff_s: float = Field(default=5.0, ge=0)
    jitter: float = Field(default=0.2, ge=0, le=1)
    # Business refusal reasons worth trying again (a technical failure always is).
    retriable_reasons: frozenset[str] = frozenset()

    def spent(self, attempts: int, elapsed_s: float) -> bool:
        """Both budgets used up: no more tries."""
        return attempts >= self.max_attempts and elapsed_s >= self.give_up_after_s

    def backoff_s(self, attempt: int, unit: float) -> float:
        """Delay before ``attempt`` (2, 3, ...); ``unit`` in [0, 1) spreads it by ±jitter."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 2))
        return base * (1 - self.jitter + 2 * self.jitter * unit)


class Action(BaseModel):
    """One command a step sends, how its payload is built, and the reply that means success.

    ``payload`` maps each command field to a path in the saga context: ``saga.id``,
    ``input.<field>`` or ``steps.<step>.<field>`` (deeper segments index into objects).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str
    reply: str
    payload: dict[str, str] = {}
    timeout_s: float = Field(default=10.0, gt=0)
    retry: RetryPolicy = RetryPolicy()


class StepDefinition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    participant: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    kind: StepKind = "compensatable"
    action: Action
    compensation: Action | None = None


class SagaDefinition(BaseModel):
    """An ordered list of steps. A saga finishes on the version it started with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    version: int = Field(ge=1)
    trigger: str  # the Start contract kind that begins this saga
    deadline_s: float | None = Field(default=None, gt=0)
    steps: tuple[StepDefinition, ...] = Field(min_length=1)
    output: dict[str, str] = {}  # final output: name -> context path

    @model_validator(mode="after")
    def _check(self) -> SagaDefinition:
        check(self)
        return self

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    def index(self, step: str) -> int:
        for i, candidate in enumerate(self.steps):
            if candidate.name == step:
                return i
        raise KeyError(step)

    def step(self, name: str) -> StepDefinition:
        return self.steps[self.index(name)]

    @property
    def pivot_index(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.kind == "pivot"), None)

    @property
    def participants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.participant for s in self.steps))


def _contract(kind: str, base: type[Any], where: str) -> type[Any]:
    model = contract_for(kind)
    if model is None or not issubclass(model, base):
        raise DefinitionError(f"{where}: {kind!r} is not a known {base.__name__} contract")
    return model


def _check_paths(action: Action, known: dict[str, set[str]], where: str) -> None:
    command = _contract(action.command, Command, where)
    _contract(action.reply, Reply, where)
    fields = command.model_fields
    missing = [f for f, info in fields.items() if info.is_required() and f not in action.payload]
    if missing:
        raise DefinitionError(f"{where}: payload lacks required field(s) {missing}")
    for field, path in action.payload.items():
        if field not in fields:
            raise DefinitionError(f"{where}: {action.command} has no field {field!r}")
        head, _, rest = path.partition(".")
        if head == "saga" and rest == "id":
            continue
        if head == "input" and rest.split(".")[0] in known["input"]:
            continue
        if head == "steps":
            step, _, attr = rest.partition(".")
            if step in known and attr.split(".")[0] in known[step]:
                continue
        raise DefinitionError(f"{where}: path {path!r} names nothing known at this point")


def check(definition: SagaDefinition) -> None:
    """The load-time rules of design.md §4; raises DefinitionError on the first broken one."""
    trigger = _contract(definition.trigger, Start, "trigger")
    known: dict[str, set[str]] = {"input": set(trigger.model_fields)}
    names = [s.name for s in definition.steps]
    if len(set(names)) != len(names) or "input" in names:
        raise DefinitionError("step names must be unique and not 'input'")
    pivots = [s.name for s in definition.steps if s.kind == "pivot"]
    if len(pivots) > 1:
        raise DefinitionError(f"at most one pivot step, found {pivots}")
    seen_pivot = False
    for step in definition.steps:
        where = f"step {step.name}"
        if seen_pivot and step.kind != "retriable":
            raise DefinitionError(f"{where}: only retriable steps may follow the pivot")
        if step.kind == "retriable" and not seen_pivot and pivots:
            raise DefinitionError(f"{where}: a retriable step must follow the pivot")
        if step.kind == "compensatable" and step.compensation is None:
            raise DefinitionError(f"{where}: a compensatable step needs a compensation")
        if step.kind != "compensatable" and step.compensation is not None:
            raise DefinitionError(f"{where}: only compensatable steps are compensated")
        _check_paths(step.action, known, where)
        if step.compensation is not None:
            _check_paths(step.compensation, known, f"{where} compensation")
        reply = contract_for(step.action.reply)
        assert reply is not None  # checked by _check_paths
        known[step.name] = set(reply.model_fields)
        seen_pivot = seen_pivot or step.kind == "pivot"
    for name, path in definition.output.items():
        head = path.partition(".")[0]
        if head not in ("input", "steps", "saga"):
            raise DefinitionError(f"output {name}: path {path!r} names nothing known")


def parse_definition(data: dict[str, Any]) -> SagaDefinition:
    try:
        return SagaDefinition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(str(exc)) from exc


def load_definition(path: str | Path) -> SagaDefinition:
    """Read and check one YAML definition file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DefinitionError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DefinitionError(f"{path}: a definition is a mapping")
    return parse_definition(data)


BUILTIN_DIR = Path(__file__).parent / "sagas"


def builtin_definitions() -> list[SagaDefinition]:
    """The definitions shipped with Baton (the payment saga)."""
    return [load_definition(p) for p in sorted(BUILTIN_DIR.glob("*.yaml"))]
