"""Failures counted per message, so one that always fails is dead-lettered, not requeued forever.

A handler that raises something unexpected (a bug, or a message shaped to trigger one) used
to send the message back to its queue, where it failed again at once, forever. Each consumer
counts the failures of each message (by message id, else a hash of body and headers) in a
bounded map; the broker's own ``x-delivery-count`` (quorum queues) carries the count across a
restart of the process. At ``poison_after`` failures the message goes to the dead-letter queue
with the reason ``poison: <exception type>``.

A dependency's failure (Redis or RabbitMQ unreachable, a timeout, a conflict) is not the
message's fault and is never counted: an outage must not dead-letter everything in flight.

The same counts tell liveness that a consumer is stuck: a message that keeps failing long
after it should have been dead-lettered (so dead-lettering it does not work either).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import aiormq

from messaging.errors import TransientError
from messaging.redis_client import REDIS_UNAVAILABLE
from messaging.transport.codec import Wire
from messaging.transport.dead_marks import identity

POISON_AFTER = 5
CAPACITY = 10_000  # messages whose failures one process remembers (the oldest go first)
STUCK_WINDOW_S = 300.0  # a stuck message counts for liveness while it failed this recently
H_DELIVERY_COUNT = "x-delivery-count"  # set by quorum queues on a redelivery
# The broker's count (quorum queues) carries failures across a process's crash, but it also
# counts every requeue of a dependency's outage: 20 deliveries count as one failure, so a
# message that kills its process is still stopped (after 20 x poison_after deliveries) and a
# long outage followed by one failure of the handler does not make a good message poison.
BROKER_COUNT_WEIGHT = 20
GROWTH_CAP = 10.0  # the longest requeue pause, as a multiple of the first

# Failures of a dependency, not of the message. TimeoutError and ConnectionError are OSErrors.
INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    OSError,
    *REDIS_UNAVAILABLE,  # a failover or a write not yet on its replicas too
    aiormq.exceptions.AMQPError,
    TransientError,  # ConcurrencyConflict too: the orchestrator's is one
)


def requeue_pause_s(first_s: float, headers: Mapping[str, Any]) -> float:
    """The pause before a failed message goes back, growing with the broker's delivery count.

    Quorum queues count every delivery (``x-delivery-count``) and dead-letter a message past
    their delivery limit (``BATON_RABBIT__DELIVERY_LIMIT``). Growing the pause tenfold over
    the first dozen deliveries makes a dependency's long outage spend that limit slowly: at
    1000 deliveries and the orchestrator's 0.2 s, over half an hour of outage, not 200 s.
    Classic queues send no count: the first pause, as before.
    """
    return first_s * min(GROWTH_CAP, 2 ** (delivery_count(headers) / 4))


def counts_as_poison(exc: BaseException) -> bool:
    """Whether ``exc`` may be the message's fault (anything but a dependency's failure)."""
    return not isinstance(exc, INFRASTRUCTURE)


def poison_reason(exc: BaseException) -> str:
    return f"poison: {type(exc).__name__}"


def delivery_count(headers: Mapping[str, Any]) -> int:
    """Earlier deliveries of this message, as the broker counted them (0 when it does not)."""
    value = headers.get(H_DELIVERY_COUNT)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class FailureCounts:
    """How often each message failed to be handled in this process; bounded, oldest dropped."""

    def __init__(
        self,
        poison_after: int = POISON_AFTER,
        *,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.poison_after = poison_after
        self._capacity = capacity
        self._clock = clock
        self._counts: dict[str, tuple[int, float]] = {}  # identity -> (failures, last at)
        self.last_progress = clock()  # when a message was last settled (acked, dead-lettered)

    def failed(self, wire: Wire) -> int:
        """Count one more failure of ``wire``; the total, at least the broker's own count."""
        key = identity(wire)
        previous, _ = self._counts.pop(key, (0, 0.0))
        failures = max(previous, delivery_count(wire.headers) // BROKER_COUNT_WEIGHT) + 1
        self._counts[key] = (failures, self._clock())
        if len(self._counts) > self._capacity:
            del self._counts[next(iter(self._counts))]  # the least recently failed
        return failures

    @property
    def counting(self) -> bool:
        """Whether any message has failed lately (else a success has nothing to forget)."""
        return bool(self._counts)

    def is_poison(self, failures: int) -> bool:
        return failures >= self.poison_after

    def settled(self, wire: Wire | None = None) -> None:
        """A message was acked or dead-lettered: progress, and its count is forgotten."""
        self.last_progress = self._clock()
        if wire is not None and self._counts:  # hash a body only when something is counted
            self._counts.pop(identity(wire), None)

    def stuck(self) -> bool:
        """True while a message keeps failing twice as often as it should ever be seen."""
        recent = self._clock() - STUCK_WINDOW_S
        return any(n >= 2 * self.poison_after and at > recent for n, at in self._counts.values())
