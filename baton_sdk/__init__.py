"""The worker SDK: a participant team depends on ``contracts`` and this package alone.

It installs on its own as the ``baton-sdk`` distribution (``sdk/pyproject.toml``: this
package, ``contracts`` and ``messaging``, nothing of the orchestrator). The inbox is a port,
``Inbox``, with ``RedisInbox`` bundled; docs/sdk.md says what an implementation must
guarantee and how to keep it in the participant's own database transaction.
"""

from baton_sdk.chaos import Chaos
from baton_sdk.handlers import Handler, Handlers, MessageContext, handles
from baton_sdk.inbox import Claim, ClaimStatus, Held, Inbox, held
from baton_sdk.keys import InboxKeys
from baton_sdk.memory_inbox import MemoryInbox
from baton_sdk.metrics import NoMetrics, PrometheusWorkerMetrics, WorkerMetrics
from baton_sdk.protocol import (
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
from baton_sdk.redis_inbox import RedisInbox
from baton_sdk.worker import Worker

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
