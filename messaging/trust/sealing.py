"""Sensitive values sealed at rest: AES-256-GCM, a key id on every value, keys rotated.

A sealed value reads ``v1.<key_id>.<base64url(nonce | ciphertext | tag)>``. The key id
lets a reader pick the key, so a value sealed before a rotation still opens while new
values use the active key. The *context* (associated data) names the value's place, e.g.
the saga id and field name: a value copied to another saga or field does not open there.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from messaging.errors import SealedValueError, SealingKeyError
from messaging.settings import SealingSettings

VERSION = "v1"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # random per value: rotate keys long before 2**32 values each
KEYS_VARIABLE = "BATON_SEALING__KEYS"
ACTIVE_VARIABLE = "BATON_SEALING__ACTIVE"
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # no dots: they separate a sealed value's parts
# Only the prefix is matched: the data is checked by decoding it, and authenticated by GCM.
SEALED_PREFIX = re.compile(r"v1\.([A-Za-z0-9_-]{1,32})\.")
MIN_DATA_CHARS = 38  # base64url of nonce (12 bytes) + tag (16 bytes)


# base64url without padding, straight on binascii: the base64 module's wrappers cost more
# than the cipher for values this small.
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    """Strict: a character outside the alphabet is an error, not skipped."""
    raw = text.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4)
    return binascii.a2b_base64(raw, strict_mode=True)


def is_sealed(value: object) -> bool:
    """Whether ``value`` has a sealed value's shape (it may still fail to open)."""
    return isinstance(value, str) and _parts(value) is not None


def _parts(value: str) -> tuple[str, str] | None:
    """(key id, data) of a sealed-looking value."""
    if not value.startswith("v1."):  # most values a caller asks about: cheaply refused
        return None
    match = SEALED_PREFIX.match(value)
    if match is None or len(value) - match.end() < MIN_DATA_CHARS:
        return None
    return match.group(1), value[match.end() :]


class Sealer:
    """Seals with the active key; opens with whichever known key a value names."""

    __slots__ = ("_active", "_ciphers")

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        for key_id, key in keys.items():
            if not KEY_ID.fullmatch(key_id):
                raise SealingKeyError(f"{KEYS_VARIABLE}: key id {key_id!r} is not {KEY_ID.pattern}")
            if len(key) != KEY_BYTES:
                raise SealingKeyError(f"{KEYS_VARIABLE}: key {key_id!r} is not {KEY_BYTES} bytes")
        if active not in keys:
            raise SealingKeyError(f"{ACTIVE_VARIABLE}: {active!r} is not in {KEYS_VARIABLE}")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = active

    def __repr__(self) -> str:  # key ids only, never key material
        return f"Sealer(active={self._active!r}, keys={sorted(self._ciphers)!r})"

    @classmethod
    def from_settings(cls, settings: SealingSettings) -> Sealer:
        """The deployment's sealer; raises SealingKeyError (naming the variable) if none."""
        keys = parse_keys(settings.keys.get_secret_value())
        if not keys:
            raise SealingKeyError(
                f"{KEYS_VARIABLE} is not set: sensitive fields cannot be encrypted at rest;"
                " create a key with `baton keys sealing`"
            )
        if not settings.active and len(keys) > 1:
            raise SealingKeyError(f"{ACTIVE_VARIABLE} must name one of {sorted(keys)}")
        return cls(keys, settings.active or next(iter(keys)))

    @property
    def active_key_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._ciphers)

    def seal(self, plaintext: bytes, context: str) -> str:
        """Encrypt under the active key, bound to ``context`` (the value's place)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._active].encrypt(nonce, plaintext, context.encode())
        return f"{VERSION}.{self._active}.{_b64encode(nonce + sealed)}"

    def open(self, value: str, context: str) -> bytes:
        """Decrypt a value sealed for ``context``; SealedValueError says why it cannot be."""
        parts = _parts(value)
        if parts is None:
            raise SealedValueError("not a sealed value (expected v1.<key id>.<data>)")
        key_id, data = parts
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealedValueError(
                f"sealed with key {key_id!r}, which {KEYS_VARIABLE} does not hold"
                f" (known: {', '.join(sorted(self._ciphers))})"
            )
        try:
            raw = _b64decode(data)
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise SealedValueError(
                f"a value sealed with key {key_id!r} does not open here:"
                " tampered with, or moved from another place"
            ) from exc

    def seal_text(self, text: str, context: str) -> str:
        return self.seal(text.encode(), context)

    def open_text(self, value: str, context: str) -> str:
        return self.open(value, context).decode()


def parse_keys(text: str) -> dict[str, bytes]:
    """``{key_id: key}`` from the variable's JSON; errors name the variable, never a key."""
    if not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raise SealingKeyError(
            f'{KEYS_VARIABLE} is not JSON: expected {{"<key id>": "<base64 of 32 bytes>"}}'
        ) from None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise SealingKeyError(f'{KEYS_VARIABLE}: expected {{"<key id>": "<base64 of 32 bytes>"}}')
    keys: dict[str, bytes] = {}
    for key_id, encoded in raw.items():
        try:
            keys[key_id] = base64.b64decode(encoded, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise SealingKeyError(f"{KEYS_VARIABLE}: key {key_id!r} is not base64") from None
    return keys


def generate_key() -> str:
    """A new random 256-bit key, base64 (standard alphabet), for ``BATON_SEALING__KEYS``."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def with_new_key(keys_json: str, key_id: str) -> str:
    """The variable's JSON with a fresh key added as ``key_id``; the others stay (rotation)."""
    keys = parse_keys(keys_json)
    if not KEY_ID.fullmatch(key_id):
        raise SealingKeyError(f"key id {key_id!r} must match {KEY_ID.pattern}")
    if key_id in keys:
        raise SealingKeyError(f"{KEYS_VARIABLE} already holds a key {key_id!r}: pick another id")
    encoded = {k: base64.b64encode(v).decode() for k, v in keys.items()}
    encoded[key_id] = generate_key()
    return json.dumps(encoded)
