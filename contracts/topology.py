"""Every exchange, queue and routing-key name. Nothing else spells them out.

A ``namespace`` prefixes every name so several deployments (or test runs) can share one
broker without seeing each other's messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict


class Topology(BaseModel):
    """Names of the RabbitMQ objects, derived from one namespace."""

    model_config = ConfigDict(frozen=True)

    namespace: str = ""

    def _name(self, name: str) -> str:
        return f"{self.namespace}{name}"

    @property
    def commands_exchange(self) -> str:
        return self._name("baton.commands")

    @property
    def replies_exchange(self) -> str:
        return self._name("baton.replies")

    @property
    def replies_queue(self) -> str:
        return self._name("baton.replies")

    @property
    def start_queue(self) -> str:
        return self._name("baton.start")

    @property
    def start_exchange(self) -> str:
        """Direct; the start queue is bound with its own name as the routing key.

        Callers publish here rather than to the default exchange: a broker user allowed to
        write to ``amq.default`` can reach every queue by name, one allowed to write to this
        exchange only the start queue.
        """
        return self._name("baton.start")

    @property
    def reply_prefix(self) -> str:
        """Named reply queues of callers start with this (server-named ``amq.gen-`` too)."""
        return self._name("baton.reply.")

    @property
    def events_exchange(self) -> str:
        return self._name("baton.events")

    @property
    def dead_letter_exchange(self) -> str:
        return self._name("baton.dlx")

    def command_queue(self, participant: str) -> str:
        return self._name(f"baton.cmd.{participant}")

    def dead_letter_queue(self, queue: str) -> str:
        """The dead-letter queue of ``queue`` (a full name, namespace included)."""
        bare = queue.removeprefix(self.namespace)
        return self._name(f"baton.dead.{bare.removeprefix('baton.')}")

    def work_queues(self, participants: Iterable[str]) -> list[str]:
        """The queues messages are consumed from: start, replies, one per participant."""
        return [self.start_queue, self.replies_queue, *map(self.command_queue, participants)]

    def work_queue_arguments(
        self, queue: str, queue_type: str, delivery_limit: int = 0
    ) -> dict[str, Any]:
        """How ``queue`` (a work queue) is declared: its type and where its dead letters go.

        ``delivery_limit`` (quorum queues only; 0 leaves the broker's default) is a backstop
        far above Baton's own poison count; the broker dead-letters a message redelivered
        that often. Dead-letter queues get neither: nothing consumes them with requeues.
        """
        arguments: dict[str, Any] = {
            "x-queue-type": queue_type,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": self.dead_letter_queue(queue),
        }
        if queue_type == "quorum" and delivery_limit > 0:
            arguments["x-delivery-limit"] = delivery_limit
        return arguments

    def all_queues(self, participants: Iterable[str]) -> list[str]:
        """Every queue ``Broker.declare`` creates: the work queues and their dead letters."""
        work = self.work_queues(participants)
        return work + [self.dead_letter_queue(q) for q in work]

    def orchestrator_needs(self, participants: Iterable[str]) -> tuple[list[str], list[str]]:
        """(queues, exchanges) that must exist before an orchestrator runs: what it consumes,
        where its commands, events and dead letters go (a missing queue drops them)."""
        work = [self.start_queue, self.replies_queue, *map(self.command_queue, participants)]
        dead = [self.dead_letter_queue(q) for q in (self.start_queue, self.replies_queue)]
        return [*work, *dead], [
            self.commands_exchange, self.events_exchange, self.dead_letter_exchange
        ]  # fmt: skip

    def participant_needs(self, participant: str) -> tuple[list[str], list[str]]:
        """(queues, exchanges) that must exist before participant ``participant`` runs."""
        own = self.command_queue(participant)
        return [own, self.dead_letter_queue(own), self.replies_queue], [
            self.replies_exchange, self.dead_letter_exchange
        ]  # fmt: skip

    @property
    def exchanges(self) -> list[str]:
        return [
            self.commands_exchange,
            self.replies_exchange,
            self.events_exchange,
            self.dead_letter_exchange,
            self.start_exchange,
        ]

    @staticmethod
    def command_routing_key(participant: str) -> str:
        return participant

    @staticmethod
    def event_routing_key(saga: str, event: str) -> str:
        return f"saga.{saga}.{event}"
