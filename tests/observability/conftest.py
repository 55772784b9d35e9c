"""Fixtures of the observability suite (the shared ones live in tests/conftest.py)."""

from __future__ import annotations

import pytest

from messaging.settings import Settings
from messaging.trust.signing import KeySet


@pytest.fixture
def settings(namespace: str, rabbit_url: str, redis_url: str, keys: KeySet) -> Settings:
    """Settings for this test's isolated namespace on the real services, signing as the
    orchestrator with the session's keys."""
    return Settings.model_validate(
        {
            "namespace": namespace,
            "rabbit": {"url": rabbit_url},
            "redis": {"url": redis_url},
            "signing": keys.settings("orchestrator"),
        }
    )
