"""What one seed's world looks like and what will happen to it, drawn before it runs.

Everything here comes from the plan's own RNG stream, so a seed names the same sagas,
balances, replicas and scheduled faults however the code under test behaves; the choices
made while the world runs (which delivery is lost, how slow a handler is) come from other
streams of the same seed. Each fault kind is drawn often enough that a few thousand seeds
exercise every one of them hundreds of times.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

PARTICIPANTS = ("payment", "risk", "pci", "transaction")
COMPENSATED_STEPS = ("authorize_payment", "assess_risk", "check_compliance")
CURRENCY = "EUR"
MERCHANT, CLOSED_MERCHANT = "merch-open", "merch-closed"
TOKEN, REVOKED_TOKEN = "tok_simcard0001", "tok_simrevoked01"
BLOCKED_ACCOUNT = "acct-blocked"

# Fault kinds scheduled at a moment (see ``Fault.kind``); the report counts each one.
CRASH_ORCHESTRATOR = "crash_orchestrator"
CRASH_PARTICIPANT = "crash_participant"
STORE_OUTAGE = "store_outage"
BROKER_OUTAGE = "broker_outage"
CONNECTION_DROP = "connection_drop"
OPERATOR_ACTIONS = ("operator_retry", "operator_resume", "operator_abort", "operator_abort_only")
MALFORMED = "malformed_message"
# Every kind of trouble a run counts in its ``scenarios``; a long run exercises each of them.
FAULT_KINDS = (
    "slow_handler", "concurrent_duplicate", "refused_compensation",
    "duplicate_command", "duplicate_reply", "lost_command", "lost_reply",
    "delayed_command", "delayed_reply", CRASH_ORCHESTRATOR, CRASH_PARTICIPANT,
    STORE_OUTAGE, BROKER_OUTAGE, CONNECTION_DROP, *OPERATOR_ACTIONS,
    "balance_just_below", "balance_exact", "balance_just_above", "shared_account",
    "duplicate_start", MALFORMED,
    "parallel_group",  # a saga of the grouped payment definition finished (odd seeds)
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Knobs:
    """How rough the network and the handlers are in this seed (probabilities per event)."""

    drop: float = 0.0  # a command or reply copy is lost
    duplicate: float = 0.0  # ... delivered twice
    delay: float = 0.0  # ... delayed (and so reordered) by up to ``max_delay_s``
    max_delay_s: float = 0.0
    slow: float = 0.0  # a handler call takes longer than its step's timeout
    latency_s: float = 0.0  # the most a delivery, a confirm or a Redis round trip takes


@dataclass(frozen=True, slots=True)
class SagaSpec:
    """One payment the client asks for, and when."""

    index: int
    key: str
    account: str
    merchant: str
    token: str
    amount: int
    start_at: float
    duplicate_at: float | None = None  # the same start published again


@dataclass(frozen=True, slots=True)
class Fault:
    """Something done to the world at ``at``; ``target`` is a process, queue or saga index."""

    at: float
    kind: str
    target: str = ""
    duration: float = 0.0

    @property
    def ends(self) -> float:
        return self.at + self.duration


@dataclass(frozen=True, slots=True)
class Plan:
    seed: int
    sagas: tuple[SagaSpec, ...]
    balances: dict[str, int]
    replicas: dict[str, int]  # process kind -> how many run ("orchestrator", participants)
    knobs: Knobs
    faults: tuple[Fault, ...]
    # (saga index, step) -> how many compensation calls are refused before one succeeds
    refusals: dict[tuple[int, str], int] = field(default_factory=dict)
    edges: tuple[str, ...] = ()  # balance scenarios drawn: "balance_just_below", ...

    @property
    def calm_at(self) -> float:
        """When the last fault is over (the client's starts included)."""
        ends = [f.ends for f in self.faults] + [s.start_at for s in self.sagas]
        ends += [s.duplicate_at for s in self.sagas if s.duplicate_at is not None]
        return max(ends, default=0.0)

    def hosts(self) -> list[str]:
        return [f"{kind}-{i}" for kind, n in self.replicas.items() for i in range(1, n + 1)]


@dataclass(frozen=True, slots=True)
class PlanConfig:
    sagas: int = 5
    active_s: float = 40.0  # starts and faults happen within this much virtual time
    max_outage_s: float = 400.0  # outages last up to this long (log-uniform from 50 ms)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _knobs(rng: random.Random) -> Knobs:
    rough = rng.random() < 0.75
    return Knobs(
        drop=rng.choice((0.0, 0.02, 0.08)) if rough else 0.0,
        duplicate=rng.choice((0.0, 0.05, 0.2)) if rough else 0.0,
        delay=rng.choice((0.0, 0.1, 0.3)) if rough else 0.0,
        max_delay_s=rng.choice((0.5, 3.0, 8.0)),
        slow=rng.choice((0.0, 0.0, 0.1, 0.3)),
        latency_s=rng.choice((0.0005, 0.003, 0.02)),
    )


def _sagas(
    rng: random.Random, config: PlanConfig
) -> tuple[list[SagaSpec], dict[str, int], list[str]]:
    """Payments sharing accounts whose balances sit just around what they ask for."""
    accounts = [f"acct-{i}" for i in range(max(1, rng.randint(1, config.sagas)))]
    sagas: list[SagaSpec] = []
    for n in range(config.sagas):
        account = rng.choice(accounts)
        if rng.random() < 0.05:
            account = BLOCKED_ACCOUNT  # risk refuses it
        sagas.append(
            SagaSpec(
                index=n,
                key=f"sim-{n}",
                account=account,
                merchant=CLOSED_MERCHANT if rng.random() < 0.08 else MERCHANT,
                token=REVOKED_TOKEN if rng.random() < 0.05 else TOKEN,
                amount=rng.choice((1_000, 2_500, 4_000)),
                start_at=rng.uniform(0, config.active_s * 0.6),
                duplicate_at=rng.uniform(0, config.active_s) if rng.random() < 0.15 else None,
            )
        )
    balances: dict[str, int] = {BLOCKED_ACCOUNT: 1_000_000}
    edges: list[str] = []
    for account in accounts:
        wanted = sorted(s.amount for s in sagas if s.account == account)
        if not wanted:
            balances[account] = 10_000
            continue
        # enough for all but the largest, then one unit below, at, or above the total
        edge = rng.choice(("balance_just_below", "balance_exact", "balance_just_above", "ample"))
        total = sum(wanted)
        balances[account] = {
            "balance_just_below": total - 1,
            "balance_exact": total,
            "balance_just_above": total + 1,
            "ample": total * 10,
        }[edge]
        edges.append(edge)
        if len(wanted) > 1:
            edges.append("shared_account")
    return sagas, balances, edges


def _faults(rng: random.Random, config: PlanConfig, replicas: dict[str, int]) -> list[Fault]:
    orchestrators = [f"orchestrator-{i}" for i in range(1, replicas["orchestrator"] + 1)]
    workers = [f"{p}-{i}" for p in PARTICIPANTS for i in range(1, replicas[p] + 1)]
    faults: list[Fault] = []

    def add(kind: str, target: str = "", seconds: float = 0.0, *, within: float = 1.0) -> None:
        faults.append(Fault(rng.uniform(0, config.active_s * within), kind, target, seconds))

    for _ in range(rng.choice((0, 0, 1, 2, 3))):
        add(CRASH_ORCHESTRATOR, rng.choice(orchestrators), _log_uniform(rng, 0.1, 60))
    for _ in range(rng.choice((0, 0, 1, 2, 4))):
        add(CRASH_PARTICIPANT, rng.choice(workers), _log_uniform(rng, 0.1, 60))
    for kind in (STORE_OUTAGE, BROKER_OUTAGE):
        if rng.random() < 0.35:
            add(kind, "", _log_uniform(rng, 0.05, config.max_outage_s))
    for _ in range(rng.choice((0, 0, 1, 3))):
        add(CONNECTION_DROP, rng.choice(orchestrators + workers), _log_uniform(rng, 0.05, 10))
    for _ in range(rng.choice((0, 0, 1, 2, 4))):
        # operator actions go on after the storm too: an operator retries a failed saga later
        add(rng.choice(OPERATOR_ACTIONS), str(rng.randrange(config.sagas)), within=3.0)
    for _ in range(rng.choice((0, 0, 1, 2))):
        add(MALFORMED, rng.choice(("start", "replies", *PARTICIPANTS)))
    return sorted(faults, key=lambda f: (f.at, f.kind, f.target))


def make_plan(seed: int, config: PlanConfig) -> Plan:
    """The world and the storm for ``seed``."""
    rng = random.Random(f"plan-{seed}")
    replicas = {"orchestrator": rng.choice((1, 2))}
    replicas.update({p: rng.choice((1, 1, 2)) for p in PARTICIPANTS})
    sagas, balances, edges = _sagas(rng, config)
    refusals: dict[tuple[int, str], int] = {}
    for saga in rng.sample(range(config.sagas), rng.choice((0, 0, 1, 2))):
        # fewer than the compensation's attempts often, more sometimes: then it fails by design
        refusals[(saga, rng.choice(COMPENSATED_STEPS))] = rng.choice((1, 3, 10, 1000))
    return Plan(
        seed=seed,
        sagas=tuple(sagas),
        balances=balances,
        replicas=replicas,
        knobs=_knobs(rng),
        faults=tuple(_faults(rng, config, replicas)),
        refusals=refusals,
        edges=tuple(edges),
    )
