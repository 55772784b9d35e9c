"""Message schemas and topology names shared by the orchestrator and every participant."""

from contracts.base import Command, Contract, Reply, Start, StepFailed
from contracts.envelope import SCHEMA_VERSION, Envelope, Phase
from contracts.events import SagaEvent
from contracts.money import Money
from contracts.registry import CONTRACTS, contract_for
from contracts.topology import Topology

__all__ = [
    "CONTRACTS",
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
    "contract_for",
]
