"""The sealer: AES-GCM round trips, places bound by associated data, rotation, key errors."""

from __future__ import annotations

import base64
import json

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from baton.cli import main
from messaging.errors import SealedValueError, SealingKeyError
from messaging.settings import SealingSettings
from messaging.trust.sealing import (
    KEYS_VARIABLE,
    Sealer,
    generate_key,
    is_sealed,
    parse_keys,
    with_new_key,
)

OLD, NEW = b"o" * 32, b"n" * 32


def test_a_value_round_trips_and_names_its_key() -> None:
    sealer = Sealer({"k1": OLD}, "k1")
    sealed = sealer.seal(b"tok_abcdef123456", "saga:s1:input:card_token")
    assert sealed.startswith("v1.k1.")
    assert b"tok_abcdef" not in sealed.encode()
    assert is_sealed(sealed)
    assert sealer.open(sealed, "saga:s1:input:card_token") == b"tok_abcdef123456"


def test_the_same_value_seals_differently_each_time() -> None:
    sealer = Sealer({"k1": OLD}, "k1")
    assert sealer.seal(b"x", "c") != sealer.seal(b"x", "c")  # a fresh nonce per value


def test_a_value_moved_to_another_place_does_not_open() -> None:
    sealer = Sealer({"k1": OLD}, "k1")
    sealed = sealer.seal_text("acct-1", "saga:s1:input:account_id")
    with pytest.raises(SealedValueError, match="moved from another place"):
        sealer.open_text(sealed, "saga:s2:input:account_id")
    with pytest.raises(SealedValueError):
        sealer.open_text(sealed, "saga:s1:input:card_token")


def test_a_tampered_value_does_not_open() -> None:
    sealer = Sealer({"k1": OLD}, "k1")
    prefix, key_id, data = sealer.seal(b"secret", "c").split(".")
    raw = bytearray(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    raw[-1] ^= 1
    tampered = f"{prefix}.{key_id}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"
    with pytest.raises(SealedValueError):
        sealer.open(tampered, "c")


def test_rotation_opens_old_values_and_seals_new_ones_with_the_active_key() -> None:
    before = Sealer({"old": OLD}, "old")
    sealed_before = before.seal(b"tok_abcdef123456", "c")
    after = Sealer({"old": OLD, "new": NEW}, "new")
    assert after.open(sealed_before, "c") == b"tok_abcdef123456"
    assert after.seal(b"tok_abcdef123456", "c").startswith("v1.new.")


def test_an_unknown_key_id_fails_clearly() -> None:
    sealed = Sealer({"gone": OLD}, "gone").seal(b"x", "c")
    with pytest.raises(SealedValueError, match=r"key 'gone', which BATON_SEALING__KEYS does not"):
        Sealer({"k2": NEW}, "k2").open(sealed, "c")


def test_a_value_that_is_not_sealed_is_refused() -> None:
    with pytest.raises(SealedValueError, match="not a sealed value"):
        Sealer({"k1": OLD}, "k1").open("tok_abcdef123456", "c")
    assert not is_sealed("tok_abcdef123456")
    assert not is_sealed(42)


def _settings(keys: dict[str, str] | str, active: str = "") -> SealingSettings:
    text = keys if isinstance(keys, str) else json.dumps(keys)
    return SealingSettings(keys=SecretStr(text), active=active)


def test_no_key_refuses_naming_the_variable() -> None:
    with pytest.raises(SealingKeyError, match=f"^{KEYS_VARIABLE} is not set"):
        Sealer.from_settings(SealingSettings())


@pytest.mark.parametrize(
    ("keys", "active", "message"),
    [
        ("not json", "", "is not JSON"),
        ({"k1": "@@@"}, "", "key 'k1' is not base64"),
        ({"k1": base64.b64encode(b"short").decode()}, "", "is not 32 bytes"),
        ({"k.1": generate_key()}, "", "key id 'k.1'"),
        ({"k1": generate_key(), "k2": generate_key()}, "", "BATON_SEALING__ACTIVE must name"),
        ({"k1": generate_key()}, "k9", "BATON_SEALING__ACTIVE: 'k9' is not in"),
    ],
)
def test_bad_keys_refuse_without_echoing_a_key(
    keys: dict[str, str] | str, active: str, message: str
) -> None:
    with pytest.raises(SealingKeyError, match=message) as refused:
        Sealer.from_settings(_settings(keys, active))
    for value in keys.values() if isinstance(keys, dict) else ():
        assert value not in str(refused.value)


def test_one_key_is_active_without_naming_it() -> None:
    sealer = Sealer.from_settings(_settings({"only": generate_key()}))
    assert sealer.active_key_id == "only"
    assert "only" in repr(sealer)


def test_the_settings_and_the_sealer_never_show_key_material() -> None:
    key = generate_key()
    settings = _settings({"k1": key})
    assert key not in repr(settings)
    assert key not in repr(Sealer.from_settings(settings))


def test_a_new_key_joins_the_others_for_rotation() -> None:
    first = with_new_key("", "s1")
    second = with_new_key(first, "s2")
    keys = parse_keys(second)
    assert sorted(keys) == ["s1", "s2"]
    assert keys["s1"] == parse_keys(first)["s1"]
    assert all(len(k) == 32 for k in keys.values())
    with pytest.raises(SealingKeyError, match="already holds a key 's1'"):
        with_new_key(second, "s1")


@pytest.mark.parametrize(
    "args",
    [["orchestrator"], ["participant", "pci"], ["dlq", "replay", "start"]],
)
def test_a_process_without_a_sealing_key_refuses_to_start_in_one_line(args: list[str]) -> None:
    result = CliRunner().invoke(main, args, env={KEYS_VARIABLE: "", "BATON_SEALING__ACTIVE": ""})
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"baton: {KEYS_VARIABLE} is not set: sensitive fields cannot be encrypted at rest;"
        " create a key with `baton keys sealing`"
    ]


def test_baton_keys_sealing_adds_an_active_key() -> None:
    current = with_new_key("", "old")
    result = CliRunner().invoke(
        main, ["keys", "sealing", "--id", "new"], env={KEYS_VARIABLE: current}
    )
    assert result.exit_code == 0, result.output
    keys_line, active_line = result.stdout.strip().splitlines()
    assert active_line == "BATON_SEALING__ACTIVE=new"
    assert keys_line.startswith(f"{KEYS_VARIABLE}='")
    keys = parse_keys(keys_line.split("=", 1)[1].strip("'"))
    assert sorted(keys) == ["new", "old"]
    assert keys["old"] == parse_keys(current)["old"]
    assert Sealer(keys, "new").active_key_id == "new"
