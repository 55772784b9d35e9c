"""The sagas ``baton demo`` can run, each as a ``DemoSaga``: package, world, stream, processes.

The demo itself (``baton.demo``) is the same for every saga: start the orchestrator and the
participants, seed, drive the stream, check the package's invariants, summarize. What differs
is here: which package the orchestrator loads, how the world is seeded, how a start is built
to fail at a given step, and which participants run in another language.

* ``payment`` (the bundled package): four Python participants; failures at each step.
* ``checkout`` (``examples/checkout``): five Python participants and the Node.js ``shipping``;
  failures at inventory, fraud (in the parallel group), review (the conditional step) and
  payment, through the seed's ``fails_at``; some orders large enough to be reviewed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from uuid import uuid4

from redis.asyncio import Redis

import examples.checkout
from contracts.base import Start
from orchestrator.runtime.packages import default_package_paths
from participants.payments import DemoWorld, FailAt, seed_demo_world
from participants.payments.contracts import StartTransaction

Language = Literal["python", "node"]


@dataclass(frozen=True)
class Stream:
    """How many starts, how many built to fail, and the seed of the choice."""

    sagas: int
    fail_rate: float
    seed: int = 7


@dataclass(frozen=True)
class Foreign:
    """A participant in another language: started from ``folder`` (Node: ``node index.js``)."""

    name: str
    language: Language
    folder: Path


class DemoSaga(Protocol):
    """One saga the demo runs."""

    saga: str  # the saga's name: its events' routing keys and saga ids
    noun: str  # what one start is, plural ("payments", "orders")

    def packages(self) -> list[Path]:
        """The saga packages the orchestrator loads (absolute folders)."""
        ...

    def foreign(self) -> tuple[Foreign, ...]:
        """Participants not in the package's ``participants:`` (run on their own)."""
        ...

    async def seed(self, redis: Redis, namespace: str, stream: Stream) -> None: ...

    def starts(self, stream: Stream) -> tuple[list[Start], int]:
        """The stream of starts (after ``seed``), and how many are built to fail."""
        ...


PAYMENT_FAIL_POINTS: tuple[FailAt, ...] = ("authorize", "risk", "pci", "pci_merchant", "capture")


def transactions(world: DemoWorld, stream: Any) -> tuple[list[StartTransaction], int]:
    """The payment stream, and how many of its payments are built to fail (spread over the
    steps). ``stream`` is anything with ``sagas``, ``fail_rate`` and ``seed``."""
    rng = random.Random(stream.seed)
    starts: list[StartTransaction] = []
    failing = 0
    for n in range(stream.sagas):
        fails_at = rng.choice(PAYMENT_FAIL_POINTS) if rng.random() < stream.fail_rate else None
        failing += fails_at is not None
        starts.append(world.transaction(n, fails_at=fails_at))
    return starts, failing


class PaymentDemo:
    """The card payment saga: the bundled package, its ledger seeded for the stream."""

    saga = "payment"
    noun = "payments"

    def __init__(self) -> None:
        self._world: DemoWorld | None = None

    def packages(self) -> list[Path]:
        return [p.resolve() for p in default_package_paths() if p.name == "payment"]

    def foreign(self) -> tuple[Foreign, ...]:
        return ()

    async def seed(self, redis: Redis, namespace: str, stream: Stream) -> None:
        accounts = max(20, stream.sagas // 5)
        self._world = await seed_demo_world(redis, namespace, accounts=accounts,
                                            balance_minor=10**9)  # fmt: skip

    def starts(self, stream: Stream) -> tuple[list[Start], int]:
        if self._world is None:
            raise RuntimeError("seed the payment world first")
        starts, failing = transactions(self._world, stream)
        return list(starts), failing


CHECKOUT = Path(next(iter(examples.checkout.__path__))).resolve()
CHECKOUT_FAIL_POINTS = ("inventory", "fraud", "review", "payment")
REVIEWED_EVERY = 5  # every fifth order that is not built to fail is large enough to be reviewed


class CheckoutDemo:
    """The checkout saga (``examples/checkout``): stock and wallets seeded for the stream."""

    saga = "checkout"
    noun = "orders"

    def __init__(self) -> None:
        from examples.checkout.seed import CheckoutWorld  # noqa: PLC0415 - the demo's only

        self._world: CheckoutWorld | None = None

    def packages(self) -> list[Path]:
        return [CHECKOUT]

    def foreign(self) -> tuple[Foreign, ...]:
        return (Foreign("shipping", "node", CHECKOUT / "node" / "shipping"),)

    async def seed(self, redis: Redis, namespace: str, stream: Stream) -> None:
        from examples.checkout.seed import seed  # noqa: PLC0415

        self._world = await seed(
            redis, namespace, run_id=uuid4().hex[:8], customers=max(4, stream.sagas // 50),
            stock=stream.sagas + 100, balance_minor=10**9,
        )  # fmt: skip

    def starts(self, stream: Stream) -> tuple[list[Start], int]:
        if self._world is None:
            raise RuntimeError("seed the checkout world first")
        rng = random.Random(stream.seed)
        starts: list[Start] = []
        failing = 0
        for n in range(stream.sagas):
            fails = rng.choice(CHECKOUT_FAIL_POINTS) if rng.random() < stream.fail_rate else None
            failing += fails is not None
            review = fails is None and n % REVIEWED_EVERY == 0
            starts.append(self._world.place_order(n, fails_at=fails, review=review))
        return starts, failing


DEMOS: dict[str, type[PaymentDemo] | type[CheckoutDemo]] = {
    "payment": PaymentDemo,
    "checkout": CheckoutDemo,
}


def demo_saga(name: str) -> DemoSaga:
    """A fresh ``DemoSaga`` of that name (KeyError for another)."""
    return DEMOS[name]()
