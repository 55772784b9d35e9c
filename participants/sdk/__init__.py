"""The worker SDK: a participant team depends on ``contracts`` and this package alone."""

from participants.sdk.chaos import Chaos
from participants.sdk.handlers import Handler, Handlers, MessageContext, handles
from participants.sdk.inbox import Claim, ClaimStatus, Held, Inbox, held
from participants.sdk.keys import InboxKeys
from participants.sdk.memory_inbox import MemoryInbox
from participants.sdk.metrics import NoMetrics, PrometheusWorkerMetrics, WorkerMetrics
from participants.sdk.protocol import (
    Accepted,
    DeadLetter,
    Drop,
    Outcome,
    Publish,
    Redeliver,
    Responder,
    Verdict,
    accept,
)
from participants.sdk.redis_inbox import RedisInbox
from participants.sdk.worker import Worker

__all__ = [
    "Accepted",
    "Chaos",
    "Claim",
    "ClaimStatus",
    "DeadLetter",
    "Drop",
    "Handler",
    "Handlers",
    "Held",
    "Inbox",
    "InboxKeys",
    "MemoryInbox",
    "MessageContext",
    "NoMetrics",
    "Outcome",
    "PrometheusWorkerMetrics",
    "Publish",
    "Redeliver",
    "RedisInbox",
    "Responder",
    "Verdict",
    "Worker",
    "WorkerMetrics",
    "accept",
    "handles",
    "held",
]
