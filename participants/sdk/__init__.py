"""The worker SDK: a participant team depends on ``contracts`` and this package alone."""

from participants.sdk.chaos import Chaos
from participants.sdk.handlers import Handler, Handlers, MessageContext, handles
from participants.sdk.inbox import Inbox, inbox_key, tomb_key
from participants.sdk.metrics import NoMetrics, PrometheusWorkerMetrics, WorkerMetrics
from participants.sdk.worker import Outcome, Worker

__all__ = [
    "Chaos",
    "Handler",
    "Handlers",
    "Inbox",
    "MessageContext",
    "NoMetrics",
    "Outcome",
    "PrometheusWorkerMetrics",
    "Worker",
    "WorkerMetrics",
    "handles",
    "inbox_key",
    "tomb_key",
]
