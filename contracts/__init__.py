"""Message schemas and topology names shared by the orchestrator and every participant.

Which messages exist is not listed here: an application fills a ``contracts.registry.
ContractRegistry`` from its saga packages (``orchestrator.runtime.packages``) or its handlers.
``contracts.registry`` and ``contracts.compiler`` are not imported here on purpose (they use
``messaging.errors``, and ``messaging`` imports this package).
"""

from contracts.base import Command, Contract, Reply, Start, StepFailed
from contracts.envelope import SCHEMA_VERSION, Envelope, Phase
from contracts.events import SagaEvent
from contracts.money import Money
from contracts.topology import Topology

__all__ = [
    "SCHEMA_VERSION",
    "Command",
    "Contract",
    "Envelope",
    "Money",
    "Phase",
    "Reply",
    "SagaEvent",
    "Start",
    "StepFailed",
    "Topology",
]
