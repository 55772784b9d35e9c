"""The AsyncAPI 3.0 document of Baton's messaging, generated from contracts and definitions.

``asyncapi_document(contracts, definitions, topology, broker)`` builds it; ``schema_files``
gives each JSON Schema in it as a self-contained file (``baton schema --out``).
"""

from __future__ import annotations

from baton.asyncapi.amqp import BrokerInfo
from baton.asyncapi.document import (
    ASYNCAPI_VERSION,
    PROTOCOL_DOC,
    PROTOCOL_VERSION,
    asyncapi_document,
)
from baton.asyncapi.inputs import Contracts, DefinitionLike, leaf_steps
from baton.asyncapi.schemas import schema_files

__all__ = [
    "ASYNCAPI_VERSION",
    "PROTOCOL_DOC",
    "PROTOCOL_VERSION",
    "BrokerInfo",
    "Contracts",
    "DefinitionLike",
    "asyncapi_document",
    "leaf_steps",
    "schema_files",
]
