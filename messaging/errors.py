"""The errors every Baton process shares (participants, orchestrator, tools), and what the
runtime does with each. The orchestrator's own (a concurrent write, an unknown saga) live in
``orchestrator.runtime.errors``.

* BatonError
  x ContractError        undecodable / unknown / invalid message -> dead-letter queue, no reply
  x StepRejected         business refusal (non-retriable)        -> StepFailed reply -> compensation
  x TransientError       dependency hiccup (retriable)           -> StepFailed(retriable) -> retry
  x DefinitionError      invalid saga definition                 -> refuse to load / start
  x SealingKeyError      sealing keys missing or malformed       -> refuse to start
  x SealedValueError     a sealed value that cannot be opened    -> the read fails, loudly
  x SigningKeyError      signing keys missing or malformed       -> refuse to start

A message that fails authentication (unsigned, unknown key, bad signature, wrong sender) is
a ContractError: dead-lettered with its reason, never answered.
"""

from __future__ import annotations


class BatonError(Exception):
    """Root of every error Baton raises on purpose."""


class ContractError(BatonError):
    """A message that cannot be decoded or validated. ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StepRejected(BatonError):
    """A participant refuses a command for a business reason; never retried."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TransientError(BatonError):
    """A dependency failed in a way that may pass; the orchestrator retries the step."""


class DefinitionError(BatonError):
    """A saga definition breaks a rule checked at load time."""


class SealingKeyError(BatonError):
    """No usable key to encrypt sensitive fields at rest; the message names the variable."""


class SealedValueError(BatonError):
    """A sealed value did not open: unknown key id, tampered, or moved to another place."""


class SigningKeyError(BatonError):
    """No usable key to sign or verify messages with; the message names the variable."""
