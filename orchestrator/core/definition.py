"""Saga definitions as data: pydantic models loaded from YAML and checked on load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from contracts.base import Command, Contract, Reply, Start
from contracts.registry import ContractLookup
from messaging.errors import DefinitionError
from orchestrator.core.expressions import Condition, ExpressionError, check_path, parse
from orchestrator.core.slo import Objectives

# compensatable: has a compensation; query: has no effect to undo (reads, screens, asks);
# pivot: the point of no return; retriable: after the pivot, retried until it succeeds.
StepKind = Literal["compensatable", "query", "pivot", "retriable"]


def _condition(value: object) -> object:
    """A ``when:`` text parsed at load, so a typo is refused with its column, not at run time."""
    if isinstance(value, str):
        try:
            return parse(value)
        except ExpressionError as exc:
            raise ValueError(f"when: {exc}") from None
    return value


When = Annotated[
    Condition | None,
    BeforeValidator(_condition),
    PlainSerializer(lambda c: c.text if c is not None else None, return_type=str | None),
]


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
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    participant: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    kind: StepKind = "compensatable"
    when: When = None  # runs only when this holds on the saga context; otherwise skipped
    action: Action
    compensation: Action | None = None


class ParallelGroup(BaseModel):
    """Steps that run at once (fork/join). All must succeed; a final failure of one stops
    the others and compensates every branch that may have applied, the latest to finish
    first, or all at once with ``compensate: parallel``."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    when: When = None
    compensate: Literal["sequential", "parallel"] = "sequential"
    steps: tuple[StepDefinition, ...] = Field(min_length=2, max_length=32)


class Parallel(BaseModel):
    """The YAML form of a group: ``- parallel: {name, steps, ...}`` in a saga's steps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    parallel: ParallelGroup


@dataclass(frozen=True, slots=True)
class Stage:
    """What the engine enters at once: one step, or a parallel group's steps."""

    name: str
    steps: tuple[StepDefinition, ...]
    when: Condition | None = None
    compensate: Literal["sequential", "parallel"] = "sequential"

    @classmethod
    def of(cls, item: StepDefinition | Parallel) -> Stage:
        if isinstance(item, StepDefinition):
            return cls(item.name, (item,))
        group = item.parallel
        return cls(group.name, group.steps, group.when, group.compensate)


class SagaDefinition(BaseModel):
    """An ordered list of stages (a step or a parallel group). A saga finishes on the
    version it started with."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True
    )

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    version: int = Field(ge=1)
    trigger: str  # the Start contract kind that begins this saga
    deadline_s: float | None = Field(default=None, gt=0)
    flow: tuple[StepDefinition | Parallel, ...] = Field(alias="steps", min_length=1)
    output: dict[str, str] = {}  # final output: name -> context path
    slos: Objectives = Field(default=(), exclude=True)  # monitoring only: not in the body
    _stages: tuple[Stage, ...] = PrivateAttr(default=())
    _stage_of: dict[str, int] = PrivateAttr(default_factory=dict)
    _steps: tuple[StepDefinition, ...] = PrivateAttr(default=())
    _contracts: ContractLookup | None = PrivateAttr(default=None)

    def _index_stages(self) -> None:
        """Stages and the stage of each step, computed once (the model is frozen)."""
        if not self._stages:
            self._stages = tuple(Stage.of(item) for item in self.flow)
            self._stage_of = {
                s.name: i for i, stage in enumerate(self._stages) for s in stage.steps
            }
            self._steps = tuple(step for stage in self._stages for step in stage.steps)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> SagaDefinition:
        contracts = (info.context or {}).get("contracts")
        if contracts is None:
            raise ValueError("a definition is checked against contracts: use parse_definition")
        self._contracts = contracts
        check(self)
        return self

    def contract(self, kind: str) -> type[Contract]:
        """The model of a message this definition names (checked to exist on load)."""
        model = self._contracts.get(kind) if self._contracts is not None else None
        if model is None:
            raise KeyError(kind)
        return model

    def with_flow(
        self, flow: tuple[StepDefinition | Parallel, ...], contracts: ContractLookup | None = None
    ) -> SagaDefinition:
        """A copy with other steps (and contracts), unchecked: for the safety exploration,
        which substitutes search budgets and condition outcomes."""
        copy = self.model_copy(update={"flow": flow})
        copy._stages, copy._stage_of, copy._steps = (), {}, ()
        copy._contracts = contracts if contracts is not None else self._contracts
        return copy

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    @property
    def stages(self) -> tuple[Stage, ...]:
        self._index_stages()
        return self._stages

    @property
    def steps(self) -> tuple[StepDefinition, ...]:
        """Every step, groups flattened, in definition order."""
        self._index_stages()
        return self._steps

    def stage_index(self, step: str) -> int:
        self._index_stages()
        return self._stage_of[step]

    def stage_of(self, step: str) -> Stage:
        return self.stages[self.stage_index(step)]

    def index(self, step: str) -> int:
        for i, candidate in enumerate(self.steps):
            if candidate.name == step:
                return i
        raise KeyError(step)

    def step(self, name: str) -> StepDefinition:
        for candidate in self.stage_of(name).steps:
            if candidate.name == name:
                return candidate
        raise KeyError(name)  # pragma: no cover - the index names only its own steps

    @property
    def pivot_index(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.kind == "pivot"), None)

    @property
    def participants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.participant for s in self.steps))


def _contract(definition: SagaDefinition, kind: str, base: type[Any], where: str) -> type[Any]:
    model = definition._contracts.get(kind) if definition._contracts is not None else None
    if model is None or not issubclass(model, base):
        raise DefinitionError(f"{where}: {kind!r} is not a known {base.__name__} contract")
    return model


def _check_action(
    definition: SagaDefinition, action: Action, known: dict[str, set[str]], where: str
) -> None:
    command = _contract(definition, action.command, Command, where)
    _contract(definition, action.reply, Reply, where)
    fields = command.model_fields
    missing = [f for f, info in fields.items() if info.is_required() and f not in action.payload]
    if missing:
        raise DefinitionError(f"{where}: payload lacks required field(s) {missing}")
    for field, path in action.payload.items():
        if field not in fields:
            raise DefinitionError(f"{where}: {action.command} has no field {field!r}")
        problem = check_path(path, known)
        if problem is not None:
            raise DefinitionError(f"{where}: {problem}")


def _check_condition(condition: Condition | None, known: dict[str, set[str]], where: str) -> None:
    if condition is None:
        return
    problem = condition.check(known)
    if problem is not None:
        raise DefinitionError(f"{where}: when {condition.text!r}: {problem}")


def _check_step(
    definition: SagaDefinition, step: StepDefinition, known: dict[str, set[str]], where: str
) -> None:
    if step.kind == "compensatable" and step.compensation is None:
        raise DefinitionError(f"{where}: a compensatable step needs a compensation")
    if step.kind != "compensatable" and step.compensation is not None:
        raise DefinitionError(f"{where}: only compensatable steps are compensated")
    _check_action(definition, step.action, known, where)
    if step.compensation is not None:
        _check_action(definition, step.compensation, known, f"{where} compensation")


def _check_names(definition: SagaDefinition) -> None:
    names = [s.name for s in definition.steps]
    groups = [stage.name for stage in definition.stages if len(stage.steps) > 1]
    if len(set(names + groups)) != len(names) + len(groups) or {"input", "saga"} & set(names):
        raise DefinitionError("step and group names must be unique and not 'input' or 'saga'")
    pivots = [s.name for s in definition.steps if s.kind == "pivot"]
    if len(pivots) > 1:
        raise DefinitionError(f"at most one pivot step, found {pivots}")
    for stage in definition.stages:
        if len(stage.steps) > 1 and any(s.kind == "pivot" for s in stage.steps):
            raise DefinitionError(f"group {stage.name}: the pivot runs alone, not in a group")


def check(definition: SagaDefinition) -> None:
    """The load-time rules of well-formedness: names, contracts, payload paths and conditions
    that name only what is known where they are read (a branch of a group cannot read its
    siblings). Money safety is proved separately by exploring every outcome (``explore``)."""
    trigger = _contract(definition, definition.trigger, Start, "trigger")
    # What a payload may read (a conditional step may be skipped: its reply may not exist),
    # and what a condition may read (a missing value there is null).
    known: dict[str, set[str]] = {"input": set(trigger.model_fields)}
    readable = dict(known)
    _check_names(definition)
    for stage in definition.stages:
        _check_condition(stage.when, readable, f"group {stage.name}")
        for step in stage.steps:
            _check_condition(step.when, readable, f"step {step.name}")
            _check_step(definition, step, known, f"step {step.name}")
        for step in stage.steps:  # visible to the stages after this one
            fields = set(_contract(definition, step.action.reply, Reply, step.name).model_fields)
            readable[step.name] = fields
            if stage.when is None and step.when is None:
                known[step.name] = fields
    for name, path in definition.output.items():
        problem = check_path(path, readable)
        if problem is not None:
            raise DefinitionError(f"output {name}: {problem}")


def parse_definition(data: dict[str, Any], contracts: ContractLookup) -> SagaDefinition:
    """A definition checked against ``contracts`` (the registry its messages are in)."""
    try:
        return SagaDefinition.model_validate(data, context={"contracts": contracts})
    except ValidationError as exc:
        raise DefinitionError(one_line(exc)) from exc


def one_line(exc: ValidationError) -> str:
    """Every problem pydantic found, with its field, on one line: what an operator reads in
    ``baton check`` or a refusing orchestrator's single error line."""
    problems = (
        f"{'.'.join(str(part) for part in error['loc']) or 'definition'}: {error['msg']}"
        for error in exc.errors()
    )
    return "invalid definition: " + "; ".join(problems)


def load_definition(path: str | Path, contracts: ContractLookup) -> SagaDefinition:
    """Read and check one YAML definition file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DefinitionError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DefinitionError(f"{path}: a definition is a mapping")
    return parse_definition(data, contracts)
