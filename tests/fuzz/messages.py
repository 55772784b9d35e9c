"""Seeded random and mutated AMQP messages for every Baton queue.

Every message carries ``x-fuzz-id`` (its first header, always valid) so that wherever it ends
up, dead-letter queue or log line, it is recognised. The families:

* ``bad_text``   a valid-looking message with one short string property that is not UTF-8
* ``bad_header`` a valid-looking message with a Baton header name or value that is not UTF-8
* ``random``     every property at random (all types), a random header tree, random body
* ``huge``       a valid-looking message whose body is over Baton's 256 KiB limit
* ``nested``     deeply nested JSON in the body, or headers nested thousands deep
* ``mutated``    a valid-looking message, sometimes signed, with one to three mutations

Only ``mutated`` and ``nested`` messages can be valid (a signed start starts a saga, a signed
command is executed; a contract ignores fields it does not know, however deep): every other
family must end in a dead-letter queue.
"""

from __future__ import annotations

import datetime
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from contracts import envelope as env
from contracts.envelope import Envelope
from contracts.money import Money
from contracts.topology import Topology
from messaging.transport.codec import CONTENT_TYPE, MAX_BODY_BYTES, Wire
from messaging.transport.decoding import RawText
from messaging.trust.signing import SIGNED, KeySet
from participants.payments.contracts import StartTransaction
from tests.support import raw_amqp as raw
from tests.support.sagas import payment_registry

TAG = "x-fuzz-id"
PARTICIPANTS = ("payment", "risk", "pci", "transaction")
COMMANDS: dict[str, dict[str, dict[str, Any]]] = {
    "payment": {
        "payments.authorize_payment.v1": {"account_id": "acct", "amount": None},
        "payments.void_authorization.v1": {"hold_id": "hold_1"},
    },
    "risk": {
        "payments.assess_risk.v1": {"account_id": "acct", "merchant_id": "m", "amount": None},
        "payments.release_risk_exposure.v1": {},
    },
    "pci": {
        "payments.check_compliance.v1": {"card_token": "tok_abcdefgh1", "merchant_id": "m"},
        "payments.revoke_attestation.v1": {},
    },
    "transaction": {
        "payments.capture_transaction.v1": {
            "hold_id": "hold_1", "merchant_id": "m", "amount": None, "attestation_id": "att_1",
        },
    },
}  # fmt: skip
STEPS = ("authorize_payment", "assess_risk", "check_compliance", "capture_transaction")
REPLIES: dict[str, dict[str, Any]] = {
    "payments.payment_authorized.v1": {"hold_id": "hold_1"},
    "payments.risk_assessed.v1": {"score": 10},
    "payments.compliance_approved.v1": {"attestation_id": "att_1"},
    "payments.transaction_captured.v1": {"capture_id": "cap_1"},
    "baton.step_failed.v1": {"reason": "declined"},
}
FAMILIES = (("bad_text", 12), ("bad_header", 12), ("random", 22), ("huge", 4),
            ("nested", 8), ("mutated", 42))  # fmt: skip
SHORT_STRINGS = ("content_type", "content_encoding", "correlation_id", "reply_to",
                 "message_id", "message_type", "app_id", "cluster_id")  # fmt: skip
WIRE_FIELDS = {"message_type": "kind", "message_id": "message_id",
               "correlation_id": "correlation_id", "reply_to": "reply_to",
               "content_type": "content_type"}  # fmt: skip
BATON_HEADERS = (env.H_SAGA_ID, env.H_SAGA, env.H_STEP, env.H_PHASE, env.H_EFFECT_ID,
                 env.H_COMPENSATES, env.H_TRACEPARENT, env.H_ATTEMPT)  # fmt: skip


@dataclass
class Fuzz:
    """One message as it goes on the wire: encoded properties and body."""

    tag: str
    family: str
    queue: str
    properties: bytes
    body: bytes
    message_id: str = ""  # when it is valid text: log lines name it
    expect: str = ""  # the reason it must be dead-lettered with, when the family decides it
    notes: list[str] = field(default_factory=list)


class Fuzzer:
    """Makes messages from one seeded generator: the same seed, the same messages."""

    def __init__(self, seed: int, topology: Topology, keys: KeySet) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.topology = topology
        self.keys = keys
        self.count = 0

    # -- the families ---------------------------------------------------------------------

    def next(self) -> Fuzz:
        self.count += 1
        queue = self.rng.choice(self.queues())
        family = self.rng.choices([f for f, _ in FAMILIES], [w for _, w in FAMILIES])[0]
        make: Callable[[str, str], Fuzz] = getattr(self, f"_{family}")
        return make(f"f{self.seed:x}x{self.count}", queue)  # no digit run: never a "card number"

    def queues(self) -> list[str]:
        t = self.topology
        return [t.start_queue, t.replies_queue, *(t.command_queue(p) for p in PARTICIPANTS)]

    def _bad_text(self, tag: str, queue: str) -> Fuzz:
        """Signed half the time, over the text the consumer makes of the bytes: then the
        signature holds and the message must be refused for its bytes themselves."""
        wire = self.valid(queue, tag)
        name, bad = self.rng.choice(SHORT_STRINGS), self.bad_utf8()
        if name == "message_id":
            # A message id is unique per publish (docs/protocol.md): two messages with the same
            # id and body are one message delivered twice, and the second is acked as the
            # copy it is. Drawn from a handful of byte strings, two fuzz messages' ids could
            # meet; the tag keeps them apart, the bytes stay invalid.
            bad = (tag.encode() + bad)[:255]
        if self.rng.random() < 0.5:
            text: dict[str, Any] = {WIRE_FIELDS[name]: RawText(bad)} if name in WIRE_FIELDS else {}
            wire = self.sign(queue, replace(wire, **text))
        signed = env.H_SIGNATURE in wire.headers  # not when the bytes hold a line feed
        fuzz = self.wire_fuzz(tag, "bad_text", queue, wire, replace={name: bad})
        fuzz.notes.extend([name, "signed" if signed else "unsigned"])
        fuzz.expect = "undecodable_property" if signed else ""
        return fuzz

    def _bad_header(self, tag: str, queue: str) -> Fuzz:
        wire = self.valid(queue, tag)
        name = self.rng.choice(BATON_HEADERS)
        wire = self.maybe_sign(queue, wire)
        signed = env.H_SIGNATURE in wire.headers
        entries = self.entries(wire.headers)
        holds = signed
        if self.rng.random() < 0.5:  # the value: breaks the signature if it covers the header
            bad = raw.tagged(raw.Raw(self.bad_utf8()))
            entries = [(k, v) for k, v in entries if k != name.encode()] + [(name.encode(), bad)]
            holds = signed and name not in SIGNED
        else:  # the name: no header of that name is signed
            entries.append((name.encode() + self.bad_utf8(), raw.tagged("x")))
        fuzz = self.wire_fuzz(tag, "bad_header", queue, wire, entries=entries)
        fuzz.notes.extend([name, "signed" if signed else "unsigned"])
        fuzz.expect = "undecodable_header" if holds else ""
        return fuzz

    def _random(self, tag: str, queue: str) -> Fuzz:
        props: dict[str, bytes] = {}
        for name in SHORT_STRINGS:
            if self.rng.random() < 0.5:
                props[name] = self.short_string()
        if self.rng.random() < 0.5:
            props["delivery_mode"] = bytes([self.rng.choice((1, 2))])
        if self.rng.random() < 0.5:
            props["priority"] = bytes([self.rng.randrange(256)])
        if self.rng.random() < 0.5:
            props["timestamp"] = self.rng.getrandbits(64).to_bytes(8, "big")
        if self.rng.random() < 0.2:  # long enough never to expire here: the broker checks it
            props["expiration"] = str(self.rng.randrange(10**7, 10**9)).encode()
        if self.rng.random() < 0.2:
            props["user_id"] = b"guest"  # the broker refuses any other
        entries = [(self.short_string(16), raw.tagged(self.value(3))) for _ in range(self.n(6))]
        props["headers"] = raw.table([(TAG.encode(), raw.tagged(tag)), *entries])
        body = self.rng.choice([self.random_bytes(2000), json.dumps(self.json(4)).encode()])
        return Fuzz(tag, "random", queue, raw.properties(props), body)

    def _huge(self, tag: str, queue: str) -> Fuzz:
        wire = self.valid(queue, tag)
        pad = "x" * (MAX_BODY_BYTES + self.rng.randrange(1, 2 * 1024 * 1024))
        body = json.dumps({**json.loads(wire.body), "pad": pad}).encode()
        wire = self.maybe_sign(queue, Wire(body, **_but_body(wire)))
        return self.wire_fuzz(tag, "huge", queue, wire)

    def _nested(self, tag: str, queue: str) -> Fuzz:
        wire = self.valid(queue, tag)
        depth = self.rng.choice((200, 1_000, 10_000, 100_000))
        if self.rng.random() < 0.3:  # 5 bytes a level: a frame holds 26,000 (broker's limit)
            entries = [*self.entries(wire.headers), (b"deep", raw.nested(min(depth, 20_000)))]
            return self.wire_fuzz(tag, "nested", queue, wire, entries=entries)
        opener, closer = self.rng.choice((("[", "]"), ('{"a":', "}")))
        body = (opener * depth + "1" + closer * depth).encode()
        wire = self.maybe_sign(queue, Wire(body, **_but_body(wire)))
        return self.wire_fuzz(tag, "nested", queue, wire)

    def _mutated(self, tag: str, queue: str) -> Fuzz:
        wire = self.valid(queue, tag)
        signed_first = self.rng.random() < 0.3
        if signed_first:
            wire = self.sign(queue, wire)
        applied = []
        for _ in range(self.rng.randint(1 if signed_first else 0, 3)):
            mutation = self.rng.choice(MUTATIONS)
            wire = mutation(self, wire)
            applied.append(mutation.__name__)
        if not signed_first and self.rng.random() < 0.6:
            wire = self.sign(queue, wire)
        fuzz = self.wire_fuzz(tag, "mutated", queue, wire)
        fuzz.notes.extend(applied)
        return fuzz

    # -- valid-looking messages ----------------------------------------------------------

    def valid(self, queue: str, tag: str) -> Wire:
        """A message of the right kind for ``queue``, as Baton would send it (unsigned)."""
        t = self.topology
        saga_id = f"fuzz-saga-{self.rng.getrandbits(40):x}"
        if queue == t.start_queue:
            body = StartTransaction(
                idempotency_key=f"fuzz-{tag}", account_id=f"acct_{tag}", merchant_id="m1",
                amount=Money(minor=self.rng.randrange(1, 10_000), currency="EUR"),
                card_token="tok_abcdefgh1",
            )  # fmt: skip
            envelope = Envelope(kind=body.KIND, saga_id="-", sent_at=int(time.time()))
            return Wire(body.model_dump_json().encode(), body.KIND, f"fuzz-{tag}", None,
                        headers=envelope.headers())  # fmt: skip
        step = self.rng.choice(STEPS)
        if queue == t.replies_queue:
            kind, data = self.rng.choice(list(REPLIES.items()))
        else:
            participant = queue.removeprefix(t.command_queue(""))
            kind, data = self.rng.choice(list(COMMANDS[participant].items()))
        body_data = {k: v if v is not None else {"minor": 100, "currency": "EUR"}
                     for k, v in data.items()}  # fmt: skip
        phase = self.rng.choice(("forward", "compensate"))
        envelope = Envelope(
            kind=kind, saga_id=saga_id, saga="payment", step=step, phase=phase,
            effect_id=f"{saga_id}:{step}:{phase}", attempt=1, sent_at=int(time.time()),
            compensates=f"{saga_id}:{step}:forward" if phase == "compensate" else "",
            deadline=time.time() + 60 if queue != t.replies_queue else None,
        )  # fmt: skip
        return Wire(json.dumps(body_data).encode(), kind, f"fuzz-{tag}", saga_id,
                    headers=envelope.headers())  # fmt: skip

    def maybe_sign(self, queue: str, wire: Wire) -> Wire:
        return self.sign(queue, wire) if self.rng.random() < 0.5 else wire

    def sign(self, queue: str, wire: Wire) -> Wire:
        """Signed by whoever may send to ``queue``: invalid content gets past the signature."""
        t = self.topology
        if queue == t.start_queue:
            signer = "cli"
        elif queue == t.replies_queue:
            signer = self.rng.choice(PARTICIPANTS)
        else:
            signer = "orchestrator"
        try:
            return self.keys.keyring(signer).sign(wire)
        except ValueError:  # a mutated value no signature can cover: sent unsigned
            return wire

    # -- encoding ------------------------------------------------------------------------

    def entries(self, headers: Any) -> list[tuple[bytes, bytes]]:
        return [(str(k).encode(), raw.tagged(v)) for k, v in dict(headers).items()]

    def wire_fuzz(
        self,
        tag: str,
        family: str,
        queue: str,
        wire: Wire,
        *,
        replace: dict[str, bytes] | None = None,
        entries: list[tuple[bytes, bytes]] | None = None,
    ) -> Fuzz:
        """Encode ``wire``; ``replace`` swaps short strings for raw bytes, ``entries`` headers."""
        props = {
            "content_type": (wire.content_type or "").encode(),
            "correlation_id": (wire.correlation_id or "").encode(),
            "reply_to": (wire.reply_to or "").encode(),
            "message_id": (wire.message_id or "").encode(),
            "message_type": (wire.kind or "").encode(),
            "delivery_mode": b"\x02",
        }
        props = {k: v for k, v in props.items() if v}
        props.update(replace or {})
        table = entries if entries is not None else self.entries(wire.headers)
        props["headers"] = raw.table([(TAG.encode(), raw.tagged(tag)), *table])
        message_id = "" if replace and "message_id" in replace else (wire.message_id or "")
        return Fuzz(tag, family, queue, raw.properties(props), wire.body, message_id)

    # -- random values -------------------------------------------------------------------

    def n(self, most: int) -> int:
        return self.rng.randrange(most + 1)

    def random_bytes(self, most: int) -> bytes:
        return self.rng.randbytes(self.n(most))

    def bad_utf8(self) -> bytes:
        good = self.rng.choice((b"payments.start_transaction.v1", b"fuzz", b""))
        bad = self.rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                               b"\x80", self.rng.randbytes(8) + b"\xff"))  # fmt: skip
        cut = self.rng.randrange(len(good) + 1)
        return (good[:cut] + bad + good[cut:])[:255]

    def short_string(self, most: int = 255) -> bytes:
        choice = self.rng.randrange(5)
        if choice == 0:
            return self.bad_utf8()[:most]
        if choice == 1:
            return self.random_bytes(most)
        if choice == 2:
            return "".join(chr(self.rng.randrange(32, 0x2FFF)) for _ in range(self.n(40))).encode(
                "utf-8", "ignore"
            )[:most]
        if choice == 3:
            return self.rng.choice([b"", b"application/json", b"[/]", b"\x1b[31m", b"a" * most])
        return self.rng.choice(list(payment_registry())).encode()[:most]

    def value(self, depth: int) -> Any:
        """A header value of any AMQP type."""
        rng = self.rng
        makers: list[Callable[[], Any]] = [
            lambda: raw.Raw(self.random_bytes(30)),
            lambda: self.short_string(40).decode("utf-8", "replace"),
            lambda: rng.random() < 0.5,
            lambda: rng.randrange(-(2**63), 2**63),
            lambda: rng.choice((0.5, -1e300, 1e300, 1e-300, 5e-324)),  # no NaN, inf: refused
            lambda: Decimal(rng.randrange(-(2**31), 2**31)).scaleb(-self.n(20)),
            lambda: datetime.datetime.fromtimestamp(rng.randrange(2**33), datetime.UTC),
            lambda: None,
            lambda: bytearray(self.random_bytes(30)),
        ]
        if depth > 0:
            makers.append(lambda: [self.value(depth - 1) for _ in range(self.n(4))])
            makers.append(lambda: {f"k{i}": self.value(depth - 1) for i in range(self.n(4))})
        return rng.choice(makers)()

    def json(self, depth: int) -> Any:
        """A JSON value of any kind, nested up to ``depth``."""
        rng = self.rng
        makers: list[Callable[[], Any]] = [
            lambda: None,
            lambda: rng.random() < 0.5,
            lambda: rng.choice((0, -1, 2**70, 1.5, 1e308)),
            lambda: self.short_string(30).decode("utf-8", "replace"),
            lambda: rng.choice(list(payment_registry())),
        ]
        if depth > 0:
            makers.append(lambda: [self.json(depth - 1) for _ in range(self.n(4))])
            makers.append(lambda: {self.short_string(10).decode("utf-8", "replace"):
                                   self.json(depth - 1) for _ in range(self.n(4))})  # fmt: skip
        return rng.choice(makers)()


# -- mutations of a valid-looking wire (named for the report) -----------------------------


def flip_body_bytes(f: Fuzzer, wire: Wire) -> Wire:
    body = bytearray(wire.body)
    for _ in range(f.rng.randint(1, 4)):
        if body:
            body[f.rng.randrange(len(body))] = f.rng.randrange(256)
    return Wire(bytes(body), **_but_body(wire))


def truncate_body(f: Fuzzer, wire: Wire) -> Wire:
    return Wire(wire.body[: f.rng.randrange(len(wire.body) + 1)], **_but_body(wire))


def replace_body_json(f: Fuzzer, wire: Wire) -> Wire:
    return Wire(json.dumps(f.json(3)).encode(), **_but_body(wire))


def extra_body_fields(f: Fuzzer, wire: Wire) -> Wire:
    try:
        data = json.loads(wire.body)
    except ValueError:  # an earlier mutation broke it
        data = {}
    if isinstance(data, dict):
        data[f.rng.choice(("amount", "extra", "idempotency_key", "score"))] = f.json(2)
    return Wire(json.dumps(data).encode(), **_but_body(wire))


def retype_header(f: Fuzzer, wire: Wire) -> Wire:
    name = f.rng.choice([*BATON_HEADERS, env.H_DEADLINE, env.H_SCHEMA, env.H_SENT_AT])
    return _with_headers(wire, {**wire.headers, name: f.value(2)})


def drop_header(f: Fuzzer, wire: Wire) -> Wire:
    headers = dict(wire.headers)
    if headers:
        headers.pop(f.rng.choice(list(headers)))
    return _with_headers(wire, headers)


def odd_attempt(f: Fuzzer, wire: Wire) -> Wire:
    value = f.rng.choice((-1, 0, 2**62, "1", 1.5, None, {"a": 1}, [1]))
    return _with_headers(wire, {**wire.headers, env.H_ATTEMPT: value})


def odd_deadline(f: Fuzzer, wire: Wire) -> Wire:
    value = f.rng.choice((0.0, -1.0, 1e300, "soon", -1e300, time.time() - 5))
    return _with_headers(wire, {**wire.headers, env.H_DEADLINE: value})


def other_kind(f: Fuzzer, wire: Wire) -> Wire:
    kind = f.rng.choice([*payment_registry(), "", "x" * 255, "payments.unknown.v9"])
    return Wire(wire.body, kind, wire.message_id, wire.correlation_id, wire.content_type,
                wire.reply_to, wire.headers)  # fmt: skip


def odd_content_type(f: Fuzzer, wire: Wire) -> Wire:
    content_type = f.rng.choice(("text/plain", "", "application/json; charset=latin-1"))
    return Wire(wire.body, wire.kind, wire.message_id, wire.correlation_id, content_type,
                wire.reply_to, wire.headers)  # fmt: skip


def odd_reply_to(f: Fuzzer, wire: Wire) -> Wire:
    reply_to = f.rng.choice(("amq.gen-x", "[/]", "a" * 255, f.topology.start_queue))
    return Wire(wire.body, wire.kind, wire.message_id, wire.correlation_id, wire.content_type,
                reply_to, wire.headers)  # fmt: skip


def odd_schema_or_phase(f: Fuzzer, wire: Wire) -> Wire:
    name, value = f.rng.choice(((env.H_SCHEMA, 2), (env.H_SCHEMA, "1"), (env.H_PHASE, "sideways"),
                                (env.H_PHASE, "compensate"), (env.H_COMPENSATES, "")))  # fmt: skip
    return _with_headers(wire, {**wire.headers, name: value})


MUTATIONS = (flip_body_bytes, truncate_body, replace_body_json, extra_body_fields, retype_header,
             drop_header, odd_attempt, odd_deadline, other_kind, odd_content_type, odd_reply_to,
             odd_schema_or_phase)  # fmt: skip


def _but_body(wire: Wire) -> dict[str, Any]:
    return {"kind": wire.kind, "message_id": wire.message_id, "correlation_id": wire.correlation_id,
            "content_type": wire.content_type or CONTENT_TYPE, "reply_to": wire.reply_to,
            "headers": wire.headers}  # fmt: skip


def _with_headers(wire: Wire, headers: dict[str, Any]) -> Wire:
    return Wire(wire.body, wire.kind, wire.message_id, wire.correlation_id, wire.content_type,
                wire.reply_to, headers)  # fmt: skip
