"""Payment providers. Production plugs in a real one behind the same interface.

A provider call can fail three ways, and callers treat them differently:
- a decline (`Charge.approved` false): a definite answer, the caller's to act on;
- `RefundRefused`: the provider definitely did not refund and will not;
- `ProviderUnavailable`: the outcome is unknown (a timeout, a 5xx, a dropped connection): the
  charge or refund may or may not have happened. Callers keep their state and ask again later
  with the same idempotency key, which returns the first outcome; they never assume nothing
  happened.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from infra.ids import new_id


@dataclass(frozen=True)
class Charge:
    id: str
    approved: bool
    amount: int
    currency: str
    decline_reason: str | None = None


class ProviderUnavailable(Exception):
    """The provider did not give a definite answer; ask again with the same idempotency key."""


class RefundRefused(Exception):
    """The provider definitely refused the refund (e.g. the charge is disputed)."""


class PaymentProvider(Protocol):
    async def charge(self, token: str, amount: int, currency: str, idempotency_key: str) -> Charge:
        """Charge once per idempotency key: a repeat returns the first outcome, charging nothing."""
        ...

    async def refund(self, charge_id: str, idempotency_key: str) -> str:
        """Refund a charge once per idempotency key; returns the refund id."""
        ...


class SandboxPaymentProvider:
    """The local and test provider: tok_visa approves, everything else declines.

    It keeps its idempotency records in memory, like a real provider keeps them server-side;
    `charges` and `refunds` count money actually moved, which the tests assert on.
    """

    APPROVE = frozenset({"tok_visa"})

    def __init__(self) -> None:
        # Lambda containers are threads in the tests: calls may come from several loops.
        self._lock = threading.Lock()
        self._by_key: dict[str, Charge] = {}
        self._refunds: dict[str, str] = {}
        self.charges: list[Charge] = []
        self.refunds: list[str] = []

    async def charge(self, token: str, amount: int, currency: str, idempotency_key: str) -> Charge:
        with self._lock:
            if idempotency_key in self._by_key:
                return self._by_key[idempotency_key]
            if token in self.APPROVE:
                result = Charge(new_id("ch"), True, amount, currency)
                self.charges.append(result)
            else:
                declined = token == "tok_chargeDeclined"  # noqa: S105 - sandbox test token
                reason = "card_declined" if declined else "invalid_token"
                result = Charge(new_id("ch"), False, amount, currency, reason)
            self._by_key[idempotency_key] = result
            return result

    async def refund(self, charge_id: str, idempotency_key: str) -> str:
        with self._lock:
            if idempotency_key not in self._refunds:
                self._refunds[idempotency_key] = new_id("re")
                self.refunds.append(charge_id)
            return self._refunds[idempotency_key]


PROVIDERS = ("none", "sandbox")


def provider_for(name: str) -> PaymentProvider | None:
    """The provider a deployment configured (LIVECOINS_PAYMENT_PROVIDER), or None for "none":
    purchaseCoins then refuses with PAYMENTS_NOT_CONFIGURED and changes nothing. A real
    provider (Stripe) is added here under its own name."""
    if name == "sandbox":
        return SandboxPaymentProvider()
    if name == "none":
        return None
    raise ValueError(f"unknown payment provider {name!r}: expected one of {', '.join(PROVIDERS)}")
