"""Card numbers (PANs) found in text: the one Luhn scan every validator and scrubber uses.

A PAN is 12 to 19 digits whose Luhn checksum holds. In free text it stands alone: a run
of digits, optionally grouped by single spaces or dashes (``4111 1111 1111 1111``), not
glued to more letters or digits. The boundary is what keeps hex ids and keys (``uuid4().hex``,
whose digit runs sit between letters) from being mistaken for card numbers: with it, a
random hex key is never refused. Inside a vault token any 12 to 19 consecutive digits
count, wherever they start: a token has no business carrying a card number at all.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

MIN_DIGITS, MAX_DIGITS = 12, 19
MASK = "[card number removed]"

# Digits, each optionally preceded by one space or dash: a run as a person would write it.
_GROUPED = re.compile(r"(?<![0-9A-Za-z])\d(?:[ -]?\d)*(?![0-9A-Za-z])")
_DIGITS = re.compile(r"\d+")
# Twelve digits, grouped or not: what either rule needs before Luhn is worth computing.
_LONG_ENOUGH = re.compile(r"\d(?:[ -]?\d){11}")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a string of decimal digits (any script's, as ``\\d``)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_pan(digits: str) -> bool:
    return MIN_DIGITS <= len(digits) <= MAX_DIGITS and luhn_valid(digits)


def _hides_pan(digits: str) -> bool:
    """Any window of 12 to 19 consecutive digits that passes Luhn."""
    return any(
        luhn_valid(digits[start : start + width])
        for width in range(MIN_DIGITS, min(len(digits), MAX_DIGITS) + 1)
        for start in range(len(digits) - width + 1)
    )


def pan_spans(text: str, *, anywhere: bool = False) -> list[tuple[int, int]]:
    """Where card numbers are in ``text`` (start, end), first to last.

    ``anywhere`` is the identifier rule: every digit run is searched window by window, and
    separators do not join runs. Without it, the free-text rule: whole grouped runs only.
    """
    if anywhere:
        return [m.span() for m in _DIGITS.finditer(text) if _hides_pan(m.group())]
    found: list[tuple[int, int]] = []
    for match in _GROUPED.finditer(text):
        digits = match.group().replace(" ", "").replace("-", "")
        if _is_pan(digits):
            found.append(match.span())
    return found


def contains_pan(text: str, *, anywhere: bool = False) -> bool:
    """Whether ``text`` holds a card number (see ``pan_spans`` for the two rules)."""
    if _LONG_ENOUGH.search(text) is None:  # the common case, at C speed
        return False
    return bool(pan_spans(text, anywhere=anywhere))


def mask_pans(text: str) -> str:
    """``text`` with every card number replaced by a marker (for text we only pass along)."""
    if not contains_pan(text):
        return text
    for start, end in reversed(pan_spans(text)):
        text = text[:start] + MASK + text[end:]
    return text


def refuse_pan(text: str) -> str:
    """A validator for free text: a card number is refused, and never echoed back."""
    if contains_pan(text):
        raise ValueError("contains a card number (12-19 digits passing Luhn): never send one")
    return text


def refuse_pan_anywhere(text: str) -> str:
    """A validator for identifiers such as vault tokens: no card number anywhere inside."""
    if contains_pan(text, anywhere=True):
        raise ValueError("contains a card number (12-19 digits passing Luhn): not a vault token")
    return text


# Field types. Free text refuses a card number at the edge; text we only pass along (a
# participant's refusal reason) has it masked instead, so an answer is never lost to it.
FreeText = Annotated[str, AfterValidator(refuse_pan)]
ScrubbedText = Annotated[str, AfterValidator(mask_pans)]
