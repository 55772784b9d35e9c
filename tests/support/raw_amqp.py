"""Messages with any bytes in their properties and headers, which no AMQP client would send.

pamqp encodes only valid values (a short string must be UTF-8 ``str``, a table a ``dict`` of
known types), and aiormq adds a message id when there is none. ``RawProperties`` carries a
content header's property bytes as given, so a test can publish, through an ordinary aiormq
channel with confirms, exactly what a broken or hostile publisher could.
"""

from __future__ import annotations

import datetime
import decimal
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pamqp import commands as spec
from pamqp import encode, frame
from pamqp.constants import FRAME_HEADER

FLAGS = spec.Basic.Properties.flags
# pamqp's property order is the wire order
ORDER = tuple(spec.Basic.Properties.__slots__)
SHORTSTR = ("content_type", "content_encoding", "correlation_id", "reply_to", "expiration",
            "message_id", "message_type", "user_id", "app_id", "cluster_id")  # fmt: skip


class RawProperties(spec.Basic.Properties):
    """Properties whose encoded form is given as bytes."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(message_id="raw")  # keeps aiormq from adding one; not sent
        self._payload = payload

    def marshal(self) -> bytes:
        return self._payload


def shortstr(raw: bytes) -> bytes:
    return struct.pack(">B", len(raw)) + raw


def longstr(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def table(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A field table from (name bytes, tagged value bytes) pairs."""
    data = b"".join(shortstr(name) + value for name, value in entries)
    return struct.pack(">I", len(data)) + data


def array(values: Iterable[bytes]) -> bytes:
    data = b"".join(values)
    return struct.pack(">I", len(data)) + data


def nested(depth: int, leaf: bytes = b"V") -> bytes:
    """A tagged value nested ``depth`` arrays deep."""
    value = leaf
    for _ in range(depth):
        value = b"A" + array([value])
    return value


def properties(values: Mapping[str, bytes]) -> bytes:
    """Encoded properties from already encoded values (short strings as raw bytes)."""
    flags, parts = 0, []
    for name in ORDER:
        if name in values:
            flags |= FLAGS[name]
            value = values[name]
            parts.append(shortstr(value) if name in SHORTSTR else value)
    return struct.pack(">H", flags) + b"".join(parts)


def header_frame(encoded: bytes, body_size: int, channel: int = 1) -> bytes:
    """A whole content header frame, as the broker would deliver it."""
    payload = struct.pack(">HxxQ", spec.Basic.frame_id, body_size) + encoded
    return frame._marshal(FRAME_HEADER, channel, payload)


class Raw(bytes):
    """A long string value sent as these bytes, UTF-8 or not."""


def tagged(value: object) -> bytes:
    """A header value as AMQP tagged bytes; floats as doubles (pamqp would send 32 bits)."""
    for kind, encoded in _TAGGED:
        if isinstance(value, kind):
            return encoded(value)
    raise TypeError(f"no AMQP form for {type(value).__name__}")


_TAGGED: tuple[tuple[type | tuple[type, ...], Callable[[Any], bytes]], ...] = (
    (Raw, lambda v: b"S" + longstr(bytes(v))),
    (bool, lambda v: b"t" + bytes([v])),
    (int, lambda v: b"l" + struct.pack(">q", v)),
    (float, lambda v: b"d" + struct.pack(">d", v)),
    (str, lambda v: b"S" + longstr(v.encode())),
    ((bytes, bytearray), lambda v: b"x" + longstr(bytes(v))),
    (type(None), lambda _: b"V"),
    (dict, lambda v: b"F" + table((str(k).encode(), tagged(x)) for k, x in v.items())),
    (list, lambda v: b"A" + array(tagged(x) for x in v)),
    (datetime.datetime, lambda v: b"T" + struct.pack(">Q", int(v.timestamp()))),
    (decimal.Decimal, lambda v: b"D" + encode.decimal(v)),
)
