"""Between aio-pika's messages and Baton's library-free ``Wire``: reading an incoming
message safely whatever its bytes, and the AMQP properties a ``Wire`` is published with.
"""

from __future__ import annotations

import aio_pika
import aiormq

from messaging.transport.codec import Wire
from messaging.transport.decoding import safe_headers, safe_property
from messaging.transport.port import Delivery


def dead_letter_context(queue: str) -> str:
    """What a sealed dead-letter body is bound to: the queue it was taken from."""
    return f"dead-letter:{queue}"


# Properties Baton does not carry, checked all the same: they are as poisonous when not text.
_UNCARRIED_PROPERTIES = ("content_encoding", "user_id", "app_id", "cluster_id")


def wire_of(message: Delivery) -> Wire:
    """The library-free view of an incoming message, safe whatever bytes it carried.

    Every property and header comes out as a value any reader can take and any publisher
    re-encode; where the message held bytes that were not text is listed in ``undecodable``
    (``codec.decode`` refuses such a message, so it is dead-lettered with the reason).
    The body is not copied.
    """
    problems: list[str] = []
    for name in _UNCARRIED_PROPERTIES:
        safe_property(getattr(message, name, None), name, problems)
    return Wire(
        body=message.body,
        kind=safe_property(message.type, "type", problems),
        message_id=safe_property(message.message_id, "message_id", problems),
        correlation_id=safe_property(message.correlation_id, "correlation_id", problems),
        content_type=safe_property(message.content_type, "content_type", problems),
        reply_to=safe_property(message.reply_to, "reply_to", problems),
        headers=safe_headers(message.headers, problems),
        undecodable=tuple(problems),
    )


def properties_of(wire: Wire) -> aiormq.spec.Basic.Properties:
    return aiormq.spec.Basic.Properties(
        headers=dict(wire.headers),
        content_type=wire.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
        message_id=wire.message_id,
        correlation_id=wire.correlation_id,
        reply_to=wire.reply_to,
        message_type=wire.kind,
    )
