"""A money-safety proof of a definition: every outcome of every step, explored exhaustively.

The load-time checks say a definition is well formed; this says it is *safe*. It drives
the real engine (``decide``) through every interleaving of every outcome the world can
produce for every command in flight: success, final refusal, technical failure, timeout
with the outcome unknown, a duplicate of an answer already given, the saga deadline, and
refused compensations; and, for each combination of the definition's conditions, both
truth values. Then, in every state reached:

- no compensation is sent once the pivot may have applied;
- a saga that ends ``compensated`` has undone every effect that may have applied: each
  compensatable step is compensated, and no step without a compensation (a pivot, a
  retriable step) may have applied;
- a saga that ends ``completed`` has undone nothing and every step ran or was skipped;
- a saga that ends ``failed`` has handed what it holds to an operator (allowed: that is
  the escalation), and a saga never stops with nothing left to wait for.

Budgets are shrunk for the search (one forward attempt, two per compensation, at most two
unknown outcomes of a step retried without limit): more retries of one effect id reach no
state that fewer do not, only longer paths to it. The first violation found on the
shortest path is returned as a counter-example.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict

from contracts.base import Contract
from orchestrator.core.definition import (
    Action,
    Parallel,
    RetryPolicy,
    SagaDefinition,
    StepDefinition,
)
from orchestrator.core.effects import Decision, Event, ReplyReceived, SendCommand, Tick
from orchestrator.core.engine import decide
from orchestrator.core.engine.draft import Draft, pivot_started
from orchestrator.core.engine.forward import enter_stage
from orchestrator.core.expressions import parse
from orchestrator.core.state import SagaState, SagaStatus, StepRecord, StepStatus

MAX_STATES = 200_000
MAX_CONDITIONS = 8
UNLIMITED_UNKNOWNS = 2
_MAY_HAVE_APPLIED = (StepStatus.SUCCEEDED, StepStatus.UNKNOWN, StepStatus.RUNNING)
_SEARCH_FORWARD = RetryPolicy(max_attempts=1, give_up_after_s=0, initial_backoff_s=0.001)
_SEARCH_COMPENSATION = RetryPolicy(max_attempts=2, give_up_after_s=0, initial_backoff_s=0.001)


class _AnyBody(Contract):
    """The search's stand-in for every contract: payloads hold placeholders, not data, and
    what is proved is the order of effects, not the validation of values."""

    model_config = ConfigDict(frozen=True, extra="allow")


class _AnyContract:
    def get(self, kind: str) -> type[Contract]:
        return _AnyBody


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a definition is unsafe, and the shortest path of outcomes that shows it."""

    rule: str
    detail: str
    path: tuple[str, ...]

    def __str__(self) -> str:
        steps = "\n".join(f"  {i}. {line}" for i, line in enumerate(self.path, 1))
        return f"{self.rule}: {self.detail}\n{steps}"


@dataclass(slots=True)
class Proof:
    """What the exploration saw; ``safe`` when no violation was found."""

    saga: str
    version: int
    states: int = 0
    variants: int = 0
    terminals: dict[str, int] = field(default_factory=dict)
    violation: Violation | None = None

    @property
    def safe(self) -> bool:
        return self.violation is None


def _search_action(action: Action, policy: RetryPolicy) -> Action:
    return action.model_copy(update={"retry": policy.model_copy(update={
        "retriable_reasons": action.retry.retriable_reasons})})  # fmt: skip


def _search_step(step: StepDefinition, truth: Mapping[str, bool]) -> StepDefinition:
    changes: dict[str, Any] = {"action": _search_action(step.action, _SEARCH_FORWARD)}
    if step.compensation is not None:
        changes["compensation"] = _search_action(step.compensation, _SEARCH_COMPENSATION)
    if step.when is not None:
        changes["when"] = parse("true" if truth[step.name] else "false")
    return step.model_copy(update=changes)


def conditions(definition: SagaDefinition) -> list[str]:
    """The names (a step's or a group's) that carry a condition."""
    named = [s.name for s in definition.stages if len(s.steps) > 1 and s.when is not None]
    return named + [step.name for step in definition.steps if step.when is not None]


def variants(definition: SagaDefinition) -> Iterator[tuple[dict[str, bool], SagaDefinition]]:
    """The definition with search budgets and each combination of condition outcomes."""
    names = conditions(definition)
    if len(names) > MAX_CONDITIONS:
        raise ValueError(f"more than {MAX_CONDITIONS} conditions: too many combinations")
    for values in itertools.product((True, False), repeat=len(names)):
        truth = dict(zip(names, values, strict=True))
        flow: list[StepDefinition | Parallel] = []
        for item in definition.flow:
            if isinstance(item, StepDefinition):
                flow.append(_search_step(item, truth))
                continue
            group = item.parallel
            changes: dict[str, Any] = {"steps": tuple(_search_step(s, truth) for s in group.steps)}
            if group.when is not None:
                changes["when"] = parse("true" if truth[group.name] else "false")
            flow.append(item.model_copy(update={"parallel": group.model_copy(update=changes)}))
        yield truth, definition.with_flow(tuple(flow), _AnyContract())


def _nest(paths: list[list[str]]) -> dict[str, Any]:
    """A placeholder value with every field the paths read (``input.total.minor``...)."""
    root: dict[str, Any] = {}
    for parts in paths:
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = child = child if isinstance(child, dict) else {}
            node = child
        node.setdefault(parts[-1], "x")
    return root


def _read_paths(definition: SagaDefinition) -> list[list[str]]:
    found = [path.split(".") for path in definition.output.values()]
    for step in definition.steps:
        for action in (step.action, step.compensation):
            if action is not None:
                found.extend(path.split(".") for path in action.payload.values())
    return found


@dataclass(frozen=True, slots=True)
class _Node:
    state: SagaState
    path: tuple[str, ...]
    unknowns: tuple[tuple[str, int], ...] = ()  # unknown outcomes so far, per unlimited step


class _Search:
    """Breadth first, so the counter-example found is a shortest one."""

    def __init__(self, definition: SagaDefinition, truth: Mapping[str, bool], proof: Proof) -> None:
        self.definition = definition
        self.proof = proof
        self.prefix = tuple(f"condition {n} is {str(v).lower()}" for n, v in truth.items())
        paths = _read_paths(definition)
        self.input = _nest([p[1:] for p in paths if p[0] == "input" and len(p) > 1])
        self.replies = {
            step.name: _nest([p[2:] for p in paths if p[:2] == ["steps", step.name] and len(p) > 2])
            for step in definition.steps
        }
        self.seen: set[tuple[Any, ...]] = set()

    def first(self) -> _Node:
        d = self.definition
        state = SagaState(
            saga_id="explore", saga=d.name, definition_version=d.version, input=self.input,
            steps={step.name: StepRecord() for step in d.steps},
            deadline=d.deadline_s, started_at=0.0, updated_at=0.0,
        )  # fmt: skip
        draft = Draft(d, state, 0.0)
        enter_stage(draft, 0)
        decision = draft.decision()
        return _Node(decision.state, (*self.prefix, "started"))

    def run(self) -> Violation | None:
        start = self.first()
        problem = self.judge(None, start)
        queue = deque([start])
        while queue and problem is None:
            node = queue.popleft()
            if node.state.status.is_finished:
                continue
            moves = list(self.moves(node))
            if not moves:
                return Violation(
                    "stuck", "the saga waits for nothing and is not finished", node.path
                )
            for label, event, now, unknown_step in moves:
                problem = self.step(node, label, event, now, unknown_step, queue)
                if problem is not None:
                    break
        return problem

    def step(
        self, node: _Node, label: str, event: Event, now: float, unknown_step: str,
        queue: deque[_Node],
    ) -> Violation | None:  # fmt: skip
        decision = decide(self.definition, node.state, event, now)
        if decision.ignored is not None:
            return None  # duplicates and stale answers change nothing: nothing to explore
        counts = dict(node.unknowns)
        if unknown_step:
            counts[unknown_step] = counts.get(unknown_step, 0) + 1
        child = _Node(decision.state, (*node.path, label), tuple(sorted(counts.items())))
        problem = self.judge(decision, child)
        key = self.key(child)
        if problem is None and key not in self.seen:
            self.seen.add(key)
            self.proof.states += 1
            if self.proof.states > MAX_STATES:
                raise ValueError(f"more than {MAX_STATES} states: the definition is too large")
            queue.append(child)
        return problem

    def key(self, node: _Node) -> tuple[Any, ...]:
        state = node.state
        steps = tuple(
            (name, r.status, r.attempts, r.compensation_attempts, r.generation,
             r.compensation_generation, r.compensation_budget_from)
            for name, r in sorted(state.steps.items())
        )  # fmt: skip
        waits = tuple(sorted((w.step, w.phase, w.attempt, w.sent, w.after_refusal)
                             for w in state.waiting))  # fmt: skip
        late = state.deadline is not None and state.updated_at >= state.deadline
        return (state.status, steps, waits, state.compensation_plan, node.unknowns, late)

    def moves(self, node: _Node) -> Iterator[tuple[str, Event, float, str]]:
        """Every event the world can deliver next: (label, event, time, unlimited step
        whose outcome it leaves unknown)."""
        state = node.state
        now = state.updated_at
        unknowns = dict(node.unknowns)
        for w in state.waiting:
            step = self.definition.step(w.step)
            what = f"{w.step} {w.phase} attempt {w.attempt}"
            if not w.sent:
                yield f"{what}: retry sent", Tick(), max(now, w.due), ""
                continue
            unlimited = w.phase == "forward" and step.kind in ("pivot", "retriable")
            budget = not unlimited or unknowns.get(w.step, 0) < UNLIMITED_UNKNOWNS
            action = step.action if w.phase == "forward" else step.compensation
            assert action is not None
            body = self.replies[w.step] if w.phase == "forward" else {}
            yield f"{what}: succeeded", self.reply(w, step, action.reply, body), now, ""
            yield f"{what}: refused", self.reply(w, step, "refused", {}, "refused"), now, ""
            if budget:
                marker = w.step if unlimited else ""
                failed = self.reply(w, step, "failed", {}, "unavailable", retriable=True)
                yield f"{what}: failed technically", failed, now, marker
                yield f"{what}: timed out, outcome unknown", Tick(), max(now, w.due), marker
            if w.attempt > 1:
                stale = ReplyReceived(w.step, w.phase, w.attempt - 1, action.reply, body,
                                      sender=step.participant)  # fmt: skip
                yield f"{what}: a duplicate answer to attempt {w.attempt - 1}", stale, now, ""
        running = state.status is SagaStatus.RUNNING and state.deadline is not None
        if running and not pivot_started(self.definition, state):
            assert state.deadline is not None
            yield "the saga deadline passed", Tick(), max(now, state.deadline), ""

    @staticmethod
    def reply(
        w: Any, step: StepDefinition, kind: str, body: dict[str, Any],
        reason: str | None = None, *, retriable: bool = False,
    ) -> ReplyReceived:  # fmt: skip
        return ReplyReceived(w.step, w.phase, w.attempt, kind, body, reason, retriable,
                             sender=step.participant)  # fmt: skip

    def judge(self, decision: Decision | None, node: _Node) -> Violation | None:
        state = node.state
        sent = decision.effects if decision is not None else ()
        compensating = [e for e in sent if isinstance(e, SendCommand) and e.phase == "compensate"]
        pivot = next((s.name for s in self.definition.steps if s.kind == "pivot"), None)
        if compensating and pivot and state.steps[pivot].status in _MAY_HAVE_APPLIED:
            detail = (
                f"{compensating[0].step} is compensated after the pivot {pivot} may have applied"
            )
            return Violation("compensation_after_pivot", detail, node.path)
        if not state.status.is_finished:
            return None
        self.proof.terminals[state.status.value] = (
            self.proof.terminals.get(state.status.value, 0) + 1
        )
        if state.status is SagaStatus.COMPENSATED:
            return self.judge_compensated(node)
        if state.status is SagaStatus.COMPLETED:
            undone = [n for n, r in state.steps.items() if r.status is StepStatus.COMPENSATED]
            if undone:
                return Violation(
                    "completed_after_undo", f"completed with {undone} undone", node.path
                )
        return None

    def judge_compensated(self, node: _Node) -> Violation | None:
        for step in self.definition.steps:
            status = node.state.steps[step.name].status
            if status not in _MAY_HAVE_APPLIED or step.kind == "query":
                continue
            if step.kind == "compensatable":
                detail = f"{step.name} may have applied ({status}) and was not compensated"
                return Violation("effect_not_undone", detail, node.path)
            detail = (f"{step.name} ({step.kind}, no compensation) may have applied "
                      f"({status}) and the saga ended compensated")  # fmt: skip
            return Violation("effect_without_compensation", detail, node.path)
        return None


def explore(definition: SagaDefinition) -> Proof:
    """The money-safety proof of ``definition`` (see the module docstring)."""
    proof = Proof(definition.name, definition.version)
    for truth, variant in variants(definition):
        proof.variants += 1
        proof.violation = _Search(variant, truth, proof).run()
        if proof.violation is not None:
            break
    return proof
