"""The four payment participants by name, and the process that runs one of them.

The process itself is the SDK's (``baton_sdk.run``), the same for every saga; what is
payment-specific here is the names and, for ``baton bench``, the no-op stand-ins.
"""

from __future__ import annotations

import asyncio

from baton_sdk.run import HandlersFactory, participant_keyring, run_worker
from messaging.settings import Settings
from messaging.trust.signing import Keyring
from participants.payments.authorization import authorization_handlers
from participants.payments.noop import NOOP_SERVICES
from participants.payments.pci import pci_handlers
from participants.payments.risk import risk_handlers
from participants.payments.transaction import transaction_handlers

__all__ = ["NOOP_SERVICES", "SERVICES", "participant_keyring", "run_participant"]

SERVICES: dict[str, HandlersFactory] = {
    "payment": authorization_handlers,
    "risk": risk_handlers,
    "pci": pci_handlers,
    "transaction": transaction_handlers,
}


async def run_participant(
    name: str,
    settings: Settings,
    stop: asyncio.Event,
    *,
    noop: bool = False,
    keyring: Keyring | None = None,
) -> None:
    """Run the payment participant ``name`` until ``stop`` is set (``run_worker``).

    ``noop`` swaps the real service for one answering every command at once (``baton bench``).
    ``keyring`` defaults to the configured one (``participant_keyring``).
    """
    services = NOOP_SERVICES if noop else SERVICES
    if name not in services:
        raise ValueError(f"unknown participant {name!r}; known: {', '.join(sorted(SERVICES))}")
    await run_worker(name, services[name], settings, stop, keyring=keyring)
