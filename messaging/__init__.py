"""AMQP plumbing, settings, errors and logging shared by the orchestrator and participants."""

from messaging.amqp import Broker, wire_of
from messaging.codec import Wire, decode, encode
from messaging.errors import (
    BatonError,
    ConcurrencyConflict,
    ContractError,
    DefinitionError,
    StepRejected,
    TransientError,
    UnknownSaga,
)
from messaging.settings import Settings

__all__ = [
    "BatonError",
    "Broker",
    "ConcurrencyConflict",
    "ContractError",
    "DefinitionError",
    "Settings",
    "StepRejected",
    "TransientError",
    "UnknownSaga",
    "Wire",
    "decode",
    "encode",
    "wire_of",
]
