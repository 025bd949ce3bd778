"""Money in integer minor units, and its human-readable form. No floats anywhere."""

from __future__ import annotations

from dataclasses import dataclass

# ISO 4217 code -> (symbol, minor-unit digits). Extend as markets open.
CURRENCIES: dict[str, tuple[str, int]] = {
    "USD": ("$", 2),
    "EUR": ("€", 2),
    "GBP": ("£", 2),
    "CAD": ("CA$", 2),
    "AUD": ("A$", 2),
    "BRL": ("R$", 2),
    "JPY": ("¥", 0),
    "KRW": ("₩", 0),
}


@dataclass(frozen=True)
class MoneyValue:
    amount: int
    currency: str

    @property
    def formatted(self) -> str:
        symbol, digits = CURRENCIES[self.currency]
        sign = "-" if self.amount < 0 else ""
        units, minor = divmod(abs(self.amount), 10**digits)
        body = f"{units:,}" + (f".{minor:0{digits}d}" if digits else "")
        return f"{sign}{symbol}{body}"
