"""Fixtures of the fuzz suite: the integration suite's settings (real services, signed, sealed)."""

from tests.integration.conftest import settings

__all__ = ["settings"]
