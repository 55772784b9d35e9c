"""What makes two deliveries the same message, and where its dead-letter mark lives."""

from __future__ import annotations

from contracts import envelope as env
from messaging.transport.codec import Wire
from messaging.transport.dead_marks import MARK_KEY, identity, mark_key


def test_the_message_id_and_body_are_the_identity() -> None:
    same = Wire(b"a", message_id="m-1", headers={"x-delivery-count": 1})
    assert identity(Wire(b"a", message_id="m-1")) == identity(same)  # headers do not count
    assert identity(Wire(b"a", message_id="m-1")) != identity(Wire(b"a", message_id="m-2"))
    # another message under a reused id is not taken for a copy of the first
    assert identity(Wire(b"a", message_id="m-1")) != identity(Wire(b"b", message_id="m-1"))


def test_without_an_id_body_and_headers_are() -> None:
    one = Wire(b"{", headers={"x-baton-step": "risk", "n": 1})
    assert identity(one) == identity(Wire(b"{", headers={"n": 1, "x-baton-step": "risk"}))
    assert identity(one) != identity(Wire(b"}", headers=dict(one.headers)))
    assert identity(one) != identity(Wire(b"{", headers={"x-baton-step": "pci", "n": 1}))


def test_the_copy_headers_are_not_part_of_the_message() -> None:
    """A copy carries the reason, a replay drops it: all three are the same message."""
    plain = Wire(b"{", headers={"a": b"bytes"})
    copied = Wire(b"{", headers={"a": b"bytes", env.H_REASON: "x", env.H_SOURCE_QUEUE: "q"})
    assert identity(plain) == identity(copied)


def test_the_mark_is_per_source_queue_under_the_namespace() -> None:
    wire = Wire(b"{", message_id="m-1")
    key = mark_key("prod.", "prod.baton.cmd.risk", wire)
    assert key.startswith(MARK_KEY.format(namespace="prod.", digest=""))
    assert key != mark_key("prod.", "prod.baton.cmd.pci", wire)
    assert key != mark_key("test.", "prod.baton.cmd.risk", wire)
