"""Money as integer minor units plus an ISO-4217 code: floats never carry money."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# The codes Baton accepts, with their minor-unit exponent. A closed list so that a typo
# ("EUR " or "usd") is a validation error at the edge rather than a silent new currency.
CURRENCY_EXPONENTS: dict[str, int] = {
    "AUD": 2, "BRL": 2, "CAD": 2, "CHF": 2, "CNY": 2, "CZK": 2, "DKK": 2, "EUR": 2,
    "GBP": 2, "HKD": 2, "HUF": 2, "INR": 2, "JPY": 0, "KRW": 0, "MXN": 2, "NOK": 2,
    "NZD": 2, "PLN": 2, "SEK": 2, "SGD": 2, "USD": 2, "ZAR": 2, "BHD": 3, "KWD": 3,
}  # fmt: skip


def _known_currency(code: str) -> str:
    if code not in CURRENCY_EXPONENTS:
        raise ValueError(f"unknown ISO-4217 currency {code!r}")
    return code


Currency = Annotated[str, AfterValidator(_known_currency)]

# Upper bound keeps amounts inside a signed 64-bit integer even after summing many of them.
MAX_MINOR_UNITS = 10**15


class Money(BaseModel):
    """A positive amount in the currency's minor units (cents for EUR, yen for JPY)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    minor: int = Field(gt=0, le=MAX_MINOR_UNITS)
    currency: Currency

    def __str__(self) -> str:
        exponent = CURRENCY_EXPONENTS[self.currency]
        return f"{self.minor / 10**exponent:.{exponent}f} {self.currency}"
