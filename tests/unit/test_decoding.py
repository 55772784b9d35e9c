"""Any bytes a broker forwards decode into a message Baton refuses with a reason, never a crash."""

from __future__ import annotations

import contextlib
import datetime
import struct
from decimal import Decimal
from typing import Any

import pamqp.frame
import pytest
from aio_pika.message import IncomingMessage
from aiormq.abc import DeliveredMessage
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp import encode

from contracts import envelope as env
from messaging.errors import ContractError
from messaging.transport import decoding
from messaging.transport.amqp import wire_of
from messaging.transport.codec import Wire, decode
from messaging.transport.decoding import RawText, Undecoded, safe_headers, tolerate_undecodable
from tests.support import raw_amqp as raw
from tests.support.sagas import payment_registry

CONTRACTS = payment_registry()

BAD = b"payments.start.v1\xff\xfe"


@pytest.fixture(autouse=True)
def tolerant() -> None:
    tolerate_undecodable()


def delivered(props: dict[str, bytes], body: bytes = b"{}") -> IncomingMessage:
    """What aio-pika hands a consumer for a delivery with these encoded properties."""
    _, _, header = pamqp.frame.unmarshal(raw.header_frame(raw.properties(props), len(body)))
    deliver = spec.Basic.Deliver(consumer_tag="c", delivery_tag=1, routing_key="q")
    return IncomingMessage(DeliveredMessage(deliver, header, body, None))  # type: ignore[arg-type]


def with_headers(*entries: tuple[bytes, bytes]) -> IncomingMessage:
    return delivered({"message_type": b"payments.start.v1", "headers": raw.table(entries)})


@pytest.mark.parametrize(
    ("prop", "attribute"),
    [("message_type", "type"), ("message_id", "message_id"),
     ("correlation_id", "correlation_id"), ("reply_to", "reply_to"),
     ("content_type", "content_type"), ("app_id", "app_id")],
)  # fmt: skip
def test_a_short_string_that_is_not_utf8_decodes_and_is_refused(prop: str, attribute: str) -> None:
    message = delivered({prop: BAD})
    value = getattr(message, attribute)
    assert isinstance(value, RawText)
    assert value.raw == BAD
    assert value == "payments.start.v1\\xff\\xfe"  # readable, and encodable again
    wire = wire_of(message)
    carried = getattr(wire, "kind" if attribute == "type" else attribute, None)
    assert carried is None or type(carried) is str
    with pytest.raises(ContractError) as refused:
        decode(wire, CONTRACTS)
    assert refused.value.reason == "undecodable_property"
    assert f"property {attribute}" in str(refused.value)


def test_a_long_undecodable_short_string_stays_a_short_string() -> None:
    text = RawText(b"\xff" * 255)
    assert len(text.encode()) <= 255
    encode.short_string(text)  # a dead-letter copy can carry it


def test_a_header_name_or_value_that_is_not_utf8_is_refused_as_a_header() -> None:
    for entry in [(b"x-baton-saga-id\xff", b"S" + raw.longstr(b"s1")),
                  (env.H_SAGA_ID.encode(), b"S" + raw.longstr(b"s1\xff"))]:  # fmt: skip
        wire = wire_of(with_headers(entry))
        with pytest.raises(ContractError) as refused:
            decode(wire, CONTRACTS)
        assert refused.value.reason == "undecodable_header"
        encode.field_table(dict(wire.headers))  # the copy re-encodes


def test_headers_nested_past_pythons_recursion_limit_decode() -> None:
    message = with_headers((b"deep", raw.nested(5000)))
    wire = wire_of(message)
    assert wire.undecodable  # kept as bytes below MAX_DEPTH, so named
    encode.field_table(dict(wire.headers))


def test_a_timestamp_beyond_year_9999_is_clamped() -> None:
    huge = struct.pack(">Q", 2**64 - 1)
    message = delivered({"timestamp": huge, "headers": raw.table([(b"t", b"T" + huge)])})
    assert message.timestamp == decoding.LATEST
    assert message.headers["t"] == decoding.LATEST


def test_an_unknown_field_type_keeps_the_rest_of_the_table_as_bytes() -> None:
    message = with_headers((b"ok", b"t\x01"), (b"bad", b"Z\x00\x01"))
    assert message.headers["ok"] is True
    assert any(isinstance(v, Undecoded) for v in message.headers.values())
    assert wire_of(message).undecodable


def test_every_amqp_type_in_a_baton_header_is_refused_or_read_never_crashes() -> None:
    values: list[Any] = [
        None, True, 7, 2**40, 1.5, 1e300, Decimal("4294967295"),
        datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC), bytearray(b"\xff"),
        bytearray(b"ok"), {"a": {"b": [1]}}, [1, [2, [3]]], b"\xff", "text",
    ]  # fmt: skip
    for value in values:
        for name in (env.H_SAGA_ID, env.H_STEP, env.H_ATTEMPT, env.H_DEADLINE, env.H_SCHEMA):
            problems: list[str] = []
            headers = safe_headers({name: value}, problems)
            encode.field_table(headers)  # always re-encodable
            wire = Wire(b"{}", kind="payments.start.v1", headers=headers, undecodable=())
            with contextlib.suppress(ContractError):
                decode(wire, CONTRACTS, require_saga=False)


def test_an_unknown_pamqp_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "version", lambda _: "4.9.0")
    with pytest.raises(RuntimeError, match=r"pamqp 4\.9\.0"):
        tolerate_undecodable()


PROPERTIES = ["message_type", "message_id", "correlation_id", "reply_to", "content_type",
              "app_id", "cluster_id", "user_id"]  # fmt: skip
short_strings = st.binary(max_size=255)
leaves = st.sampled_from([
    b"t\x01", b"b\x80", b"I\x00\x00\x00\x01", b"V", b"D\x02\xff\xff\xff\xff",
    b"d" + struct.pack(">d", 1e308), b"f" + struct.pack(">f", 1.0),
    b"T" + struct.pack(">Q", 2**63), b"x" + raw.longstr(b"\xff"),
])  # fmt: skip
values = st.recursive(
    leaves | st.binary(max_size=40).map(lambda b: b"S" + raw.longstr(b)),
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda vs: b"A" + raw.array(vs))
        | st.lists(st.tuples(st.binary(max_size=8), inner), max_size=3).map(
            lambda es: b"F" + raw.table(es)
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    props=st.dictionaries(
        st.sampled_from(PROPERTIES),
        short_strings,
    ),
    headers=st.lists(st.tuples(st.binary(max_size=20), values), max_size=5),
)
def test_any_properties_and_headers_decode_to_a_wire_decode_refuses_or_reads(
    props: dict[str, bytes], headers: list[tuple[bytes, bytes]]
) -> None:
    message = delivered({**props, "headers": raw.table(headers)})
    wire = wire_of(message)
    encode.field_table(dict(wire.headers))
    for text in (wire.kind, wire.message_id, wire.correlation_id, wire.reply_to):
        assert text is None or type(text) is str
        if text is not None:
            encode.short_string(text)
    with contextlib.suppress(ContractError):
        decode(wire, CONTRACTS)
