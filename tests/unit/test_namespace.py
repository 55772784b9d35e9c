"""A namespace ends in its separator, so no namespace is the prefix of another one's names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from messaging.settings import Settings


@pytest.mark.parametrize("namespace", ["", "prod.", "team-a.payments.", "ci:run_7."])
def test_accepted(namespace: str) -> None:
    settings = Settings(namespace=namespace)
    assert settings.topology.start_queue == f"{namespace}baton.start"


@pytest.mark.parametrize(
    ("namespace", "message"),
    [
        ("prod", r"must be empty or end in '\.': set 'prod\.'"),
        ("prod:", r"must be empty or end in '\.': set 'prod\.'"),
        ("prod*.", "only letters, digits"),
        ("{prod}.", "only letters, digits"),
        ("a b.", "only letters, digits"),
    ],
)
def test_rejected_with_what_to_set(namespace: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(namespace=namespace)


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_NAMESPACE", "staging")
    with pytest.raises(ValidationError, match=r"set 'staging\.'"):
        Settings()
