"""The console's pure parts: masking, the search form's checks, the audit trail, the command's
refusals. No server, no browser."""

from __future__ import annotations

import os
import socket

import pytest
from click.testing import CliRunner, Result

from baton.cli import main
from baton.console.masking import MASK, clear_secrets, masked_fields, masked_text
from baton.console.views import BadQuery, parse_search
from messaging.trust.sealing import Sealer

PAN = "4111 1111 1111 1111"


def test_sealed_and_sensitive_fields_are_masked_and_card_numbers_in_text_too() -> None:
    sealer = Sealer({"k": os.urandom(32)}, "k")
    sealed = sealer.seal_text('"tok_secret_123"', "saga:s:input:card_token")
    data = {"card_token": sealed, "account_id": "acct-42", "memo": f"card {PAN}",
            "nested": {"token": sealer.seal_text("x", "c")}, "amount": 12}  # fmt: skip
    shown = masked_fields(data, frozenset({"account_id"}))
    assert shown == {"card_token": MASK, "account_id": MASK, "memo": "card [card number removed]",
                     "nested": {"token": MASK}, "amount": 12}  # fmt: skip


def test_nothing_known_about_the_fields_masks_them_all() -> None:
    assert masked_fields({"a": 1, "b": "x"}, None) == {"a": MASK, "b": MASK}


def test_clear_sensitive_values_are_masked_in_free_text() -> None:
    data = {"card_token": "tok_in_clear_99", "account_id": "a", "merchant": "m-1"}
    secrets = clear_secrets(data, frozenset({"card_token", "account_id"}))
    assert secrets == ["tok_in_clear_99"]  # "a" is too short to search text for
    assert masked_text(f"refused tok_in_clear_99 and {PAN}", secrets) == (
        "refused *** and [card number removed]"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "lots"}, "limit must be a number"),
        ({"limit": "0"}, "limit must be a whole number"),
        ({"limit": "2.5"}, "limit must be a whole number"),
        ({"limit": "501"}, "limit must be between 0 and 500"),
        ({"idle_s": "-1"}, "idle_s must be between"),
        ({"idle_s": "nan"}, "idle_s must be between"),
        ({"status": "lost"}, "status must be one of"),
        ({"q": "x" * 201}, "q is longer than 200"),
    ],
)
def test_a_bad_search_is_refused_with_its_reason(params: dict[str, str], message: str) -> None:
    with pytest.raises(BadQuery, match=message):
        parse_search(params)


def test_a_good_search_is_parsed() -> None:
    assert parse_search({"q": " k-1 ", "status": "failed", "idle_s": "30", "limit": "7"}) == {
        "q": "k-1", "status": "failed", "idle_s": 30.0, "limit": 7,
    }  # fmt: skip
    assert parse_search({}) == {"q": "", "status": "", "idle_s": 0.0, "limit": 50}


def console(*args: str) -> Result:
    """``baton console`` in this process: each case here stops before it would serve."""
    return CliRunner().invoke(main, ["console", *args])


def test_the_command_refuses_a_bad_port_a_bad_host_and_a_port_in_use() -> None:
    bad = console("--port", "70000")
    assert bad.exit_code == 2
    assert "70000" in bad.stderr
    unknown = console("--host", "no-such-host.invalid")
    assert unknown.exit_code == 2
    assert "not an address" in unknown.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = console("--port", str(port))
    assert busy.exit_code == 1
    assert busy.stderr.startswith(f"baton console: cannot listen on 127.0.0.1:{port}")
    assert busy.exception is None or isinstance(busy.exception, SystemExit)  # no traceback
