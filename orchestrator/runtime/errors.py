"""The orchestrator's own errors: what its store and runner raise, nobody else.

* ConcurrencyConflict  saga changed under us (a TransientError)  -> reload, decide again
* UnknownSaga          a message names a saga we do not hold     -> dead-letter queue
"""

from __future__ import annotations

from messaging.errors import BatonError, TransientError


class ConcurrencyConflict(TransientError):
    """The saga's stored version moved between our read and our write.

    A TransientError: a message that met one is redelivered and decided again, and the
    poison counter treats it as the passing trouble it is.
    """

    def __init__(self, saga_id: str) -> None:
        super().__init__(f"saga {saga_id} changed concurrently")
        self.saga_id = saga_id


class UnknownSaga(BatonError):
    """A reply or operator action names a saga that is not in the store."""

    def __init__(self, saga_id: str) -> None:
        super().__init__(f"unknown saga {saga_id}")
        self.saga_id = saga_id
