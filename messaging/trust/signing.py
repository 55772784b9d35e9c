"""Ed25519 signatures on every message: who sent it, and that nothing that matters changed.

Each service signs what it publishes with its own private key; every consumer verifies
against the public keys it trusts, before decoding anything else, and then checks that the
signer may send that message (the orchestrator's commands, the step's participant's reply,
an upstream's start). The signed bytes are

    b"baton-signature-v1\\n" + canonical line + b"\\n" + body

where the canonical line is the ``\\n``-joined ``name=value`` pairs of ``SIGNED``, sorted by
name, each value rendered by ``render``. docs/protocol.md ("Signatures") spells this out for
participants in other languages, with a test vector.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import struct
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts import envelope as env
from messaging.errors import ContractError, SigningKeyError
from messaging.settings import SigningSettings
from messaging.transport.codec import MAX_BODY_BYTES, Wire

PREFIX = b"baton-signature-v1\n"
ORCHESTRATOR = "orchestrator"  # the only signer participants take commands from
PROPERTIES = ("correlation_id", "message_id", "reply_to", "type")
HEADERS = (
    env.H_SAGA_ID, env.H_SAGA, env.H_STEP, env.H_PHASE, env.H_EFFECT_ID, env.H_COMPENSATES,
    env.H_ATTEMPT, env.H_DEADLINE, env.H_SCHEMA, env.H_SENT_AT, env.H_SIGNER, env.H_KEY_ID,
)  # fmt: skip
SIGNED = tuple(sorted(PROPERTIES + HEADERS))  # the order of the canonical line
# Reasons a message fails authentication: dead-lettered with the reason, never answered.
UNAUTHENTIC = frozenset({"unsigned", "unknown_key", "bad_signature", "wrong_sender"})
VAR = "BATON_SIGNING__"


def render(value: Any) -> str:
    """One value of the canonical line; ValueError for a value that has no rendering.

    Absent: empty. Text as is (bytes as UTF-8). Booleans ``true``/``false``. Integers in
    decimal. Floats as Python's ``repr`` of the value as decoded: the shortest decimal that
    reads back as the same binary64 (``1712345728.0``). A line feed in any value is refused,
    so no value can pose as the next pair or the body.
    """
    match value:
        case None:
            text = ""
        case str():
            text = value
        case bytes() | bytearray():
            text = bytes(value).decode()  # UnicodeDecodeError is a ValueError
        case bool():
            text = "true" if value else "false"
        case int():
            text = str(value)
        case float() if math.isfinite(value):
            text = repr(value)
        case _:
            raise ValueError(f"no canonical form for a {type(value).__name__} value")
    if "\n" in text:
        raise ValueError("a line feed in a signed value")
    return text


def binary32(value: float) -> float:
    """``value`` as it arrives: pamqp writes a float header in single precision (AMQP ``f``).

    Round to nearest, ties to even; ValueError beyond single precision's range.
    """
    try:
        narrowed: float = struct.unpack(">f", struct.pack(">f", value))[0]
    except OverflowError as exc:
        raise ValueError(f"{value!r} does not fit a single-precision float") from exc
    return narrowed


def binary32_up(value: float) -> float:
    """The least single-precision value at or above ``value`` (a positive time): a deadline
    that travels as a float never arrives earlier than it was meant."""
    near = binary32(value)
    if near >= value:
        return near
    bits: int = struct.unpack(">I", struct.pack(">f", near))[0]
    after: float = struct.unpack(">f", struct.pack(">I", bits + (1 if near >= 0 else -1)))[0]
    return after


def _field(wire: Wire, name: str) -> Any:
    properties = {
        "correlation_id": wire.correlation_id,
        "message_id": wire.message_id,
        "reply_to": wire.reply_to,
        "type": wire.kind,
    }
    return properties[name] if name in properties else (wire.headers or {}).get(name)


def canonical(wire: Wire) -> bytes:
    """The canonical line of ``wire``: ``name=value`` per signed field, sorted by name."""
    return "\n".join(f"{name}={render(_field(wire, name))}" for name in SIGNED).encode()


def signed_bytes(wire: Wire) -> bytes:
    """Exactly what the signature covers."""
    return PREFIX + canonical(wire) + b"\n" + wire.body


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, with or without padding."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def signature_text(signature: bytes) -> str:
    """The ``x-baton-signature`` header value: base64url without padding."""
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def private_key(text: str) -> Ed25519PrivateKey:
    """A private key from base64 of its raw 32-byte seed."""
    return Ed25519PrivateKey.from_private_bytes(_b64decode(text))


def public_key(text: str) -> Ed25519PublicKey:
    """A public key from base64 of its raw 32 bytes."""
    return Ed25519PublicKey.from_public_bytes(_b64decode(text))


def public_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _header_value(value: Any) -> str:
    """A signature header as text; anything unrenderable counts as absent."""
    try:
        return render(value)
    except ValueError:
        return ""


class Keyring:
    """This process's signing key and the public keys it trusts, by signer and key id.

    Several key ids per signer are trusted at once during a rotation. ``private`` is None
    for a process that only verifies. ``upstreams`` are the signers whose starts the
    orchestrator accepts.
    """

    def __init__(
        self,
        signer: str,
        trusted: Mapping[str, Mapping[str, Ed25519PublicKey]],
        *,
        key_id: str = "",
        private: Ed25519PrivateKey | None = None,
        upstreams: Iterable[str] = ("cli",),
    ) -> None:
        if private is not None and not key_id:
            raise SigningKeyError(f"a signing key needs its key id: set {VAR}KEY_ID")
        self.signer = signer
        self.key_id = key_id
        self._private = private
        self._trusted = {s: dict(keys) for s, keys in trusted.items()}
        self.upstreams = frozenset(upstreams)

    @classmethod
    def from_settings(cls, settings: SigningSettings, *, role: str) -> Keyring:
        """The keyring of a process whose default signer name is ``role``.

        Raises SigningKeyError, naming the variable to set, when a key is missing or bad.
        """
        s = settings.resolved()
        signer = s.signer or role
        secret = s.private_key.get_secret_value() if s.private_key else ""
        if not secret:
            raise SigningKeyError(
                f"{signer} has no signing key: set {VAR}PRIVATE_KEY and {VAR}KEY_ID (or "
                f"{VAR}FILE); `baton keys generate {signer}` makes one"
            )
        if not s.public_keys:
            raise SigningKeyError(f"{signer} trusts no key: set {VAR}PUBLIC_KEYS (or {VAR}FILE)")
        try:
            own = private_key(secret)
        except (ValueError, binascii.Error):
            raise SigningKeyError(
                f"{VAR}PRIVATE_KEY is not base64 of a 32-byte Ed25519 seed"
            ) from None
        trusted: dict[str, dict[str, Ed25519PublicKey]] = {}
        for name, keys in s.public_keys.items():
            for key_id, text in keys.items():
                try:
                    trusted.setdefault(name, {})[key_id] = public_key(text)
                except (ValueError, binascii.Error):
                    raise SigningKeyError(
                        f"{VAR}PUBLIC_KEYS: the key {name}/{key_id} is not base64 of 32 bytes"
                    ) from None
        listed = trusted.get(signer, {}).get(s.key_id)
        if listed is not None and public_text(listed) != public_text(own.public_key()):
            raise SigningKeyError(
                f"{VAR}PRIVATE_KEY does not match the public key listed for {signer}/{s.key_id}"
            )
        return cls(signer, trusted, key_id=s.key_id, private=own, upstreams=s.upstreams)

    def require_trust(self, signers: Iterable[str]) -> None:
        """Refuse to run without a public key of each of ``signers`` (SigningKeyError)."""
        missing = sorted(set(signers) - {s for s, keys in self._trusted.items() if keys})
        if missing:
            raise SigningKeyError(
                f"{self.signer} trusts no key of {', '.join(missing)}: add "
                f"{'it' if len(missing) == 1 else 'them'} to {VAR}PUBLIC_KEYS"
            )

    def sign(self, wire: Wire) -> Wire:
        """``wire`` with the signer, key id and signature headers added.

        A float among the signed headers is narrowed to single precision first: that is
        what the broker delivers (``binary32``), so what is signed is what arrives. A message
        without a message id gets one here (the transport would give it one after signing).
        """
        if self._private is None:
            raise SigningKeyError(f"{self.signer} has no signing key: set {VAR}PRIVATE_KEY")
        if not wire.message_id:
            wire = replace(wire, message_id=env.new_message_id())
        headers = {**wire.headers, env.H_SIGNER: self.signer, env.H_KEY_ID: self.key_id}
        headers.pop(env.H_SIGNATURE, None)
        for name in HEADERS:
            value = headers.get(name)
            if isinstance(value, float):
                headers[name] = binary32(value)
        unsigned = replace(wire, headers=headers)
        headers[env.H_SIGNATURE] = signature_text(self._private.sign(signed_bytes(unsigned)))
        return replace(wire, headers=headers)

    def verify(self, wire: Wire) -> str:
        """The signer of ``wire``; ContractError ``unsigned``, ``unknown_key`` or
        ``bad_signature`` otherwise. Looks at nothing but the signed bytes."""
        headers = wire.headers or {}
        signer = _header_value(headers.get(env.H_SIGNER))
        key_id = _header_value(headers.get(env.H_KEY_ID))
        signature = _header_value(headers.get(env.H_SIGNATURE))
        if not (signer and key_id and signature):
            raise ContractError("unsigned", "no x-baton-signer, x-baton-key-id or signature")
        key = self._trusted.get(signer, {}).get(key_id)
        if key is None:
            raise ContractError("unknown_key", f"{signer[:64]}/{key_id[:64]}")
        if len(wire.body) > MAX_BODY_BYTES:  # not worth hashing: it is refused anyway
            raise ContractError("body_too_large", f"{len(wire.body)} bytes")
        try:
            key.verify(_b64decode(signature), signed_bytes(wire))
        except (InvalidSignature, ValueError, binascii.Error):
            raise ContractError("bad_signature", f"{signer}/{key_id}") from None
        return signer

    def verify_from(self, wire: Wire, allowed: Collection[str], what: str) -> str:
        """``verify``, and ContractError ``wrong_sender`` unless the signer is ``allowed``."""
        signer = self.verify(wire)
        if signer not in allowed:
            raise ContractError("wrong_sender", f"{signer} may not send {what}")
        return signer


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One signer's key pair and its key id."""

    signer: str
    key_id: str
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls, signer: str, key_id: str = "") -> SigningKey:
        return cls(signer, key_id or secrets.token_hex(4), Ed25519PrivateKey.generate())

    @property
    def private_text(self) -> str:
        """base64 of the raw 32-byte seed: a secret."""
        raw = self.private.private_bytes_raw()
        return base64.b64encode(raw).decode()

    @property
    def public_text(self) -> str:
        return public_text(self.private.public_key())


class KeySet:
    """A key for each of several signers: a whole deployment's keys at once.

    What ``baton keys generate`` prints, and how the demo, the bench and the tests give
    each process its own key and everyone's public keys.
    """

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        self.keys = {key.signer: key for key in keys}

    @classmethod
    def generate(cls, signers: Iterable[str]) -> KeySet:
        return cls(SigningKey.generate(signer) for signer in signers)

    @property
    def public_keys(self) -> dict[str, dict[str, str]]:
        return {k.signer: {k.key_id: k.public_text} for k in self.keys.values()}

    def settings(self, signer: str, *, upstreams: Iterable[str] = ("cli",)) -> dict[str, Any]:
        """``signer``'s signing settings, as JSON: also the content of a ``FILE``."""
        key = self.keys[signer]
        return {
            "signer": signer, "key_id": key.key_id, "private_key": key.private_text,
            "public_keys": self.public_keys, "upstreams": list(upstreams),
        }  # fmt: skip

    def env(self, signer: str, *, upstreams: Iterable[str] = ("cli",)) -> dict[str, str]:
        """The ``BATON_SIGNING__*`` variables of a process signing as ``signer``."""
        values = self.settings(signer, upstreams=upstreams)
        return {
            f"{VAR}{name.upper()}": value if isinstance(value, str) else json.dumps(value)
            for name, value in values.items()
        } | {f"{VAR}FILE": ""}

    def keyring(self, signer: str, *, upstreams: Iterable[str] = ("cli",)) -> Keyring:
        key = self.keys[signer]
        trusted = {k.signer: {k.key_id: k.private.public_key()} for k in self.keys.values()}
        return Keyring(signer, trusted, key_id=key.key_id, private=key.private,
                       upstreams=upstreams)  # fmt: skip


def public_keys_of(path: Path) -> dict[str, dict[str, str]]:
    """The public half of a signing settings file (``signer``, ``key_id``, ``private_key``)."""
    data = json.loads(path.read_text())
    key = private_key(str(data["private_key"]))
    return {str(data["signer"]): {str(data["key_id"]): public_text(key.public_key())}}
