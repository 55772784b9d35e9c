"""Every Redis key shape of a participant's inbox, in one place.

All keys of one participant carry its hash tag, ``{namespace}participant:{<name>}:…``, so
the claim and record scripts (outcome, lease, tombstone, fencing counter) touch one Redis
Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass

OUTCOME = "inbox"  # string: the final outcome (reply JSON) of one effect id
TOMBSTONE = "tomb"  # string: a forward effect whose compensation ran
LEASE = "lease"  # string: the fencing token of the delivery working on one subject
FENCE = "fence"  # counter: the last fencing token handed out


@dataclass(frozen=True, slots=True)
class InboxKeys:
    """Key names of one participant's inbox; the only place they are spelled."""

    namespace: str
    participant: str

    def __post_init__(self) -> None:
        for part in (self.namespace, self.participant):
            if "{" in part or "}" in part:
                raise ValueError("namespace and participant must not contain braces (hash tag)")

    @property
    def base(self) -> str:
        return f"{self.namespace}participant:{{{self.participant}}}"

    def outcome(self, effect_id: str) -> str:
        return f"{self.base}:{OUTCOME}:{effect_id}"

    def tombstone(self, effect_id: str) -> str:
        return f"{self.base}:{TOMBSTONE}:{effect_id}"

    def lease(self, subject: str) -> str:
        return f"{self.base}:{LEASE}:{subject}"

    @property
    def fence(self) -> str:
        return f"{self.base}:{FENCE}"
