"""One reading of a value that may arrive as bytes or as str.

Redis answers bytes or str depending on how its client was made (``decode_responses``), and
a Lua script's nil arrives as None; every adapter that reads Redis reads its answers here.
"""

from __future__ import annotations


def as_text(value: object) -> str:
    """``value`` as str: bytes decoded as UTF-8, None as ""."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
