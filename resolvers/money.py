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


# Digits of the ISO 4217 currencies not listed above whose minor unit is not the cent: a store
# purchase is recorded in the currency the store charged (Apple's storefronts use many more).
_DIGITS = {
    **dict.fromkeys("BIF CLP DJF GNF ISK KMF PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}


@dataclass(frozen=True)
class MoneyValue:
    amount: int
    currency: str

    @property
    def formatted(self) -> str:
        """E.g. "$0.99"; a currency without a symbol here by its code: "INR 99.00"."""
        symbol, digits = CURRENCIES.get(self.currency) or (
            f"{self.currency} ",
            _DIGITS.get(self.currency, 2),
        )
        sign = "-" if self.amount < 0 else ""
        units, minor = divmod(abs(self.amount), 10**digits)
        body = f"{units:,}" + (f".{minor:0{digits}d}" if digits else "")
        return f"{sign}{symbol}{body}"
