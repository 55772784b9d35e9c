"""AMQP decoding that survives any bytes a publisher can get past the broker.

pamqp decodes a frame all or nothing, and aiormq's connection reader treats a frame it cannot
decode as a broken connection. So a single message with a ``type`` (or any other short string
property, or a header name) that is not UTF-8 closed the connection; the robust connection
reconnected, the broker redelivered the same message, and the consumer never got past it.
Found in pamqp 4.0.1: ``decode.short_str`` (decode.py line 274) and ``decode.field_table``
(line 361) call ``.decode('utf-8')``; ``frame._unmarshal_header_frame`` turns the error into
``UnmarshalingException``, which aiormq's ``FrameReceiver.get_frame`` (connection.py line
229) raises as ``InvalidFrameError`` in its reader task. RabbitMQ 3.10 passes such bytes
through; it refuses unknown field types, bad delivery modes and bad expirations itself.

This replaces the few decoders that can fail on bytes the broker forwards, so the message
reaches Baton, which dead-letters it with a reason:

* a short string that is not UTF-8 becomes ``RawText``: a ``str`` with the bytes escaped
  (``\\xff``), safe to log, label and re-encode, that remembers the bytes it came from;
* a header name likewise; a long string already falls back to ``bytes`` in pamqp;
* a header table or array nested deeper than ``MAX_DEPTH`` (which made pamqp recurse past
  Python's limit) or one whose rest cannot be decoded becomes ``Undecoded`` bytes;
* a timestamp beyond the year 9999 is clamped to the largest ``datetime``.

pamqp's decoders are module functions looked up in two dicts; they are patched in place, and
only for a pamqp version whose decode.py this was written against: on any other version
``tolerate_undecodable`` refuses (raises) rather than patch code it has not read.
"""

from __future__ import annotations

import datetime
import struct
from decimal import Decimal
from importlib.metadata import version
from typing import Any

from pamqp import common, decode, encode

KNOWN_PAMQP = frozenset({"4.0.1"})
MAX_DEPTH = 32  # nested tables and arrays decoded; a deeper one is kept as Undecoded bytes
SHORTSTR_BYTES = 255
LATEST = datetime.datetime.max.replace(tzinfo=datetime.UTC)


class RawText(str):
    """A short string that was not UTF-8: its bytes escaped as text, and the bytes themselves.

    ``str(value)`` keeps the type (aio-pika passes properties through ``str``), so
    ``messaging.transport.amqp.wire_of`` can tell it from text a publisher really sent.
    """

    raw: bytes

    def __new__(cls, raw: bytes) -> RawText:
        text = raw.decode("utf-8", "backslashreplace")
        # re-encodable as a short string again (a dead-letter copy carries it)
        text = text.encode()[:SHORTSTR_BYTES].decode("utf-8", "ignore")
        made = super().__new__(cls, text)
        made.raw = raw
        return made

    def __str__(self) -> str:
        return self


class Undecoded(bytes):
    """The raw bytes of a header value that could not be decoded (too deep, or unknown)."""


def short_str(value: bytes) -> tuple[int, str]:
    try:
        length = common.Struct.byte.unpack(value[0:1])[0]
    except (struct.error, TypeError) as err:
        raise ValueError("Could not unpack short string value") from err
    raw = value[1 : length + 1]
    try:
        return length + 1, raw.decode("utf-8")
    except UnicodeDecodeError:
        return length + 1, RawText(raw)


def timestamp(value: bytes) -> tuple[int, datetime.datetime]:
    """pamqp's timestamp (seconds, or milliseconds past 2106), clamped instead of raising."""
    try:
        seconds: float = common.Struct.timestamp.unpack(value[0:8])[0]
    except struct.error as err:
        raise ValueError("Could not unpack timestamp value") from err
    if seconds > 0xFFFFFFFF:
        seconds /= 1000.0
    try:
        return 8, datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return 8, LATEST


def _name(value: bytes, offset: int, end: int) -> tuple[int, str]:
    length = common.Struct.byte.unpack_from(value, offset)[0]
    offset += 1
    if offset + length > end:
        raise ValueError("Field table key length exceeds data")
    raw = value[offset : offset + length]
    try:
        return offset + length, raw.decode("utf-8")
    except UnicodeDecodeError:
        return offset + length, RawText(raw)


def _bounds(value: bytes) -> int:
    """The end of the table or array starting at ``value`` (its length prefix included)."""
    try:
        end: int = 4 + common.Struct.integer.unpack(value[0:4])[0]
    except struct.error as err:
        raise ValueError("Could not unpack data") from err
    if end > len(value):
        raise ValueError("Field table length exceeds available data")
    return end


def _embedded(value: bytes, depth: int) -> tuple[int, Any]:
    tag = value[0:1]
    if tag == b"F":
        consumed, found = _table(value[1:], depth + 1)
    elif tag == b"A":
        consumed, found = _array(value[1:], depth + 1)
    else:
        return decode.embedded_value(value)
    return consumed + 1, found


def _table(value: bytes, depth: int = 0) -> tuple[int, Any]:
    end = _bounds(value)
    if depth >= MAX_DEPTH:
        return end, Undecoded(value[4:end])
    data: dict[str, Any] = {}
    offset = 4
    while offset < end:
        try:
            start, key = _name(value, offset, end)
            consumed, data[key] = _embedded(value[start:end], depth)
        except ValueError:  # the rest of this table cannot be read; its length is known
            data[RawText(b"")] = Undecoded(value[offset:end])
            break
        offset = start + consumed
    return end, data


def _array(value: bytes, depth: int = 0) -> tuple[int, Any]:
    end = _bounds(value)
    if depth >= MAX_DEPTH:
        return end, Undecoded(value[4:end])
    data: list[Any] = []
    offset = 4
    while offset < end:
        try:
            consumed, found = _embedded(value[offset:end], depth)
        except ValueError:
            data.append(Undecoded(value[offset:end]))
            break
        data.append(found)
        offset += consumed
    return end, data


def field_table(value: bytes) -> tuple[int, Any]:
    return _table(value)


def field_array(value: bytes) -> tuple[int, Any]:
    return _array(value)


def tolerate_undecodable() -> None:
    """Install the tolerant decoders for every frame decoded from now on (idempotent).

    Raises RuntimeError on a pamqp version this was not written against.
    """
    found = version("pamqp")
    if found not in KNOWN_PAMQP:
        raise RuntimeError(
            f"pamqp {found} is not one messaging.transport.decoding was checked against "
            f"({', '.join(sorted(KNOWN_PAMQP))}): read its decode.py and extend KNOWN_PAMQP"
        )
    replaced = {"shortstr": short_str, "timestamp": timestamp,
                "table": field_table, "array": field_array}  # fmt: skip
    decode.METHODS.update(replaced)
    decode.TABLE_MAPPING.update({b"T": timestamp, b"F": field_table, b"A": field_array})
    decode.short_str = short_str
    decode.timestamp = timestamp
    decode.field_table = field_table
    decode.field_array = field_array


# -- safe values for Baton's side ------------------------------------------------------------

MAX_NOTED = 20  # undecodable places named in a reason; the rest are counted in the first


def _note(problems: list[str], where: str) -> None:
    if len(problems) < MAX_NOTED:
        problems.append(where)


def safe_text(value: object, where: str, problems: list[str], *, limit: int = 0) -> str:
    """Plain text that encodes as UTF-8 (at most ``limit`` bytes); notes ``where`` if it was not."""
    if type(value) is str and value.isascii() and len(value) <= (limit or len(value)):
        return value  # the common case, at C speed
    if isinstance(value, RawText):
        _note(problems, where)
        value = str.__str__(value)  # plain str: the escaped text
    elif not isinstance(value, str):
        _note(problems, where)
        raw = bytes(value) if isinstance(value, bytes | bytearray) else repr(value).encode()
        value = raw.decode("utf-8", "backslashreplace")
    else:
        try:
            value.encode()
        except UnicodeEncodeError:  # lone surrogates from some other decoder
            _note(problems, where)
            value = value.encode("utf-8", "backslashreplace").decode()
    if limit:
        value = value.encode()[:limit].decode("utf-8", "ignore")
    return str.__str__(value)


def safe_property(value: object, name: str, problems: list[str]) -> str | None:
    """A short string property as plain text, or None when absent."""
    if value is None or (type(value) is str and value.isascii()):
        return value  # a short string pamqp decoded as text is at most 255 bytes
    return safe_text(value, f"property {name}", problems, limit=SHORTSTR_BYTES)


def safe_headers(headers: object, problems: list[str]) -> dict[str, Any]:
    """Headers every reader can take and every publisher re-encode; what was not text is noted.

    A value that was not text keeps its bytes (as a byte array, which AMQP can carry); a value
    decoded fine that pamqp cannot encode again (a double beyond a float's range, a decimal
    beyond its mantissa) is kept as its repr, so a dead-letter copy can always be published.
    """
    if not isinstance(headers, dict):
        if headers:
            _note(problems, "headers")
        return {}
    safe = _safe_table(headers, "", problems, 0)
    for key, value in safe.items():
        if not isinstance(value, _MAY_NOT_REENCODE):
            continue
        try:
            encode.encode_table_value(value)
        except Exception:  # TypeError, OverflowError, struct.error: whatever pamqp refuses
            safe[key] = repr(value)[:1000]
    return safe


# Decoded values pamqp may refuse to encode again (text, bytes, ints, times always re-encode).
_MAY_NOT_REENCODE = (float, Decimal, dict, list)


def _safe_table(
    table: dict[Any, Any], path: str, problems: list[str], depth: int
) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for key, value in table.items():
        if type(key) is str and key.isascii():
            name = key
        else:
            name = safe_text(key, f"header name {path}{key!s}", problems)
        if type(value) in _PLAIN or (type(value) is str and value.isascii()):
            safe[name] = value  # most headers: nothing to look into
        else:
            safe[name] = _safe_value(value, path + name, problems, depth)
    return safe


_PLAIN = frozenset({bool, int, float, Decimal, datetime.datetime, bytearray, type(None)})


def _safe_value(value: Any, path: str, problems: list[str], depth: int) -> Any:
    if isinstance(value, str):  # the name of the place is made only when it is needed
        ascii_ = type(value) is str and value.isascii()
        return value if ascii_ else safe_text(value, f"header {path}", problems)
    if isinstance(value, bytes):  # a long string that was not UTF-8, or Undecoded
        _note(problems, f"header {path}")
        return bytearray(value)
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        _note(problems, f"header {path}")
        return repr(value)[:1000]
    if isinstance(value, dict):
        return _safe_table(value, path + ".", problems, depth + 1)
    if isinstance(value, list):
        return [_safe_value(v, f"{path}[{i}]", problems, depth + 1) for i, v in enumerate(value)]
    return value  # bool, numbers, Decimal, datetime, bytearray, None: AMQP types as they are
