"""The network between the processes: the stub broker's fault knobs, turned by the seed.

Commands and replies may be lost, duplicated or delayed (which reorders them); starts,
dead letters and the injected malformed messages are never touched, because the client
publishes with confirms and the dead-letter check counts copies exactly. Consumers are
watched too: a delivery of an effect id that arrives while another delivery of the same
effect id is still in a consumer's hands is a *concurrent duplicate*, the case the
participant's lease exists for.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from baton.sim.plan import Knobs
from baton.sim.trace import Trace
from contracts import envelope as env
from messaging.transport.codec import Wire
from messaging.transport.stub_broker import Handler, StubBroker, StubMessage


class Network:
    """``BrokerFaults`` for one seed, counting what it does in ``tally``."""

    def __init__(
        self,
        rng: random.Random,
        knobs: Knobs,
        trace: Trace,
        tally: Counter[str],
        roles: dict[str, str],
    ) -> None:
        self._rng = rng
        self._knobs = knobs
        self._trace = trace
        self._tally = tally
        self._roles = roles  # queue name -> "command" or "reply" (only these are touched)
        self.in_hand: Counter[tuple[str, str]] = Counter()  # (queue, effect id) -> deliveries
        self.untouchable: set[str] = set()  # message ids never lost, duplicated or delayed

    def copies(self, queue: str, wire: Wire) -> Sequence[float]:
        role = self._roles.get(queue)
        if role is None or wire.message_id in self.untouchable:
            return (0.0,)
        k, rng = self._knobs, self._rng
        if k.drop and rng.random() < k.drop:
            self._fault(f"lost_{role}", f"lost {self._trace.message(wire)}")
            return ()
        count = 2 if k.duplicate and rng.random() < k.duplicate else 1
        if count == 2:
            self._fault(f"duplicate_{role}", f"duplicated {self._trace.message(wire)}")
        delays = []
        for _ in range(count):
            delay = 0.0
            if k.delay and rng.random() < k.delay:
                delay = rng.random() * k.max_delay_s
                self._fault(f"delayed_{role}", f"delayed {delay:.3f}s {self._trace.message(wire)}")
            delays.append(delay)
        return delays

    def _fault(self, kind: str, text: str) -> None:
        self._tally[kind] += 1
        self._trace(text)

    def latency(self) -> float:
        return self._rng.random() * self._knobs.latency_s

    def choose(self, count: int) -> int:
        return self._rng.randrange(count)

    def watch(self, queue: str, consumer: str, handler: Handler) -> Handler:
        """``handler`` with each delivery traced and concurrent duplicates counted."""

        async def watched(message: StubMessage) -> None:
            wire = message.stored.wire
            effect = str((message.headers or {}).get(env.H_EFFECT_ID, ""))
            again = " redelivered" if message.redelivered else ""
            self._trace(f"deliver {self._trace.message(wire)} -> {consumer}{again}")
            key = (queue, effect)
            if effect and self.in_hand[key]:
                self._tally["concurrent_duplicate"] += 1
            self.in_hand[key] += 1
            try:
                await handler(message)
            finally:
                self.in_hand[key] -= 1

        return watched


class SimBroker(StubBroker):
    """A stub broker connection whose consumers are watched by the ``Network``."""

    network: Network | None = None

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
    ) -> None:
        if self.network is not None:
            handler = self.network.watch(queue, self.name, handler)
        await super().consume(queue, handler, prefetch=prefetch)
