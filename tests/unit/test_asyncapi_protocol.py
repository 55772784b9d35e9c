"""The generated AsyncAPI document points readers to the participant protocol it implies."""

from __future__ import annotations

from pathlib import Path

from baton.asyncapi import PROTOCOL_DOC, PROTOCOL_VERSION
from contracts.topology import Topology
from tests.support.asyncapi import document

ROOT = Path(__file__).resolve().parents[2]


def test_the_document_links_the_protocol_it_follows() -> None:
    info = document()["info"]
    assert PROTOCOL_DOC in info["description"]
    assert info["x-baton-protocol"] == {"version": PROTOCOL_VERSION, "document": PROTOCOL_DOC}
    text = (ROOT / PROTOCOL_DOC).read_text()
    assert text.startswith(f"# The Baton participant protocol, version {PROTOCOL_VERSION}")


def test_the_protocol_spells_every_header_as_the_code_does() -> None:
    from contracts import envelope as env
    from contracts.base import StepFailed
    from messaging.transport.codec import MAX_BODY_BYTES

    text = (ROOT / PROTOCOL_DOC).read_text()
    headers = [getattr(env, name) for name in dir(env) if name.startswith("H_")]
    assert all(f"`{header}`" in text for header in headers)
    assert f"`{StepFailed.KIND}`" in text
    assert f"{MAX_BODY_BYTES:,} bytes" in text
    assert f"`x-baton-schema: {env.SCHEMA_VERSION}`" in text
    t = Topology(namespace="<ns>")
    for name in (
        t.commands_exchange,
        t.replies_queue,
        t.dead_letter_exchange,
        t.command_queue("<p>"),
        t.dead_letter_queue(t.command_queue("<p>")),
    ):
        assert f"`{name}`" in text, name
