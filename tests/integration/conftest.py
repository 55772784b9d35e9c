"""Fixtures of the integration suite."""

from __future__ import annotations

import os

import pytest

from messaging.settings import Settings
from messaging.trust.sealing import ACTIVE_VARIABLE, KEYS_VARIABLE
from messaging.trust.signing import KeySet


@pytest.fixture
def settings(namespace: str, rabbit_url: str, redis_url: str, keys: KeySet) -> Settings:
    """Settings for this test's isolated namespace on the real services, sealing with the
    session's key (the one the processes a test starts get from the environment), and
    signing as the orchestrator with the session's keys."""
    sealing = {"keys": os.environ[KEYS_VARIABLE], "active": os.environ.get(ACTIVE_VARIABLE, "")}
    return Settings.model_validate(
        {
            "namespace": namespace,
            "rabbit": {"url": rabbit_url},
            "redis": {"url": redis_url},
            "sealing": sealing,
            "signing": keys.settings("orchestrator"),
        }
    )
