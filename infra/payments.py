"""Payment providers: the sandbox, and Stripe (infra/stripe_payments.py), behind one interface.

A purchase's payment takes two calls, so that a real processor's payment id is stored before
any money can move (Stripe forgets idempotency keys after 24 hours; a retry days later must
resume the same payment, never start a second one):
1. `create`: a payment for the amount, idempotent by key (the purchase id); returns its id,
   which the purchase's idempotency record keeps;
2. `confirm` it with the buyer's payment method (idempotent by key; asked again after an
   ambiguous failure, it answers the payment's state instead of charging twice).
`retrieve` tells a payment's state; `refund` refunds it once per key; `charge` reads a charge
as it is now, with its refunds and disputes: what money after the payment follows
(resolvers/money_back.py), whatever the processor's notifications said.

A call can fail three ways, and callers treat them differently:
- a definite answer: `Payment.status` "declined" (with the processor's decline code),
  `RefundRefused`;
- `ProviderUnavailable`: no answer (a timeout, a 5xx, a rate limit, a dropped connection): the
  call may or may not have acted. Callers keep their state and ask again later with the same
  key; they never assume that nothing happened.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Protocol

from infra.ids import new_id

SUCCEEDED, DECLINED, ACTION, PROCESSING = "succeeded", "declined", "requires_action", "processing"


@dataclass(frozen=True)
class Payment:
    """A processor's view of one purchase's payment."""

    id: str
    status: str  # SUCCEEDED | DECLINED | ACTION (the buyer must authenticate) | PROCESSING
    amount: int
    currency: str
    charge_id: str | None = None  # what refunds and disputes name (Stripe: latest_charge)
    decline_code: str | None = None
    client_secret: str | None = None  # for the buyer's browser to finish an authentication
    metadata: tuple[tuple[str, str], ...] = ()  # what the payment was created with

    def meta(self, name: str) -> str | None:
        return dict(self.metadata).get(name)


# Refund statuses that return money: a pending refund is counted (the processor counts it in
# the charge's amount_refunded and gives it back if it fails); failed and canceled are not.
REFUND_COUNTS = frozenset({"succeeded", "pending", "requires_action"})


@dataclass(frozen=True)
class Refund:
    id: str
    amount: int
    status: str  # succeeded | pending | requires_action | failed | canceled


@dataclass(frozen=True)
class Dispute:
    """A dispute as it is now. `withdrawn`: the funds it took from the platform's balance and
    has not reinstated (the processor's balance transactions for it, net)."""

    id: str
    amount: int
    status: str  # warning_needs_response | warning_under_review | warning_closed |
    #             needs_response | under_review | won | lost
    withdrawn: int

    @property
    def money_lost(self) -> int:
        """Money this dispute takes from the platform now: none for an inquiry (no funds move)
        or a dispute won; a lost one its amount; an open one what was withdrawn for it."""
        if self.status.startswith("warning_") or self.status == "won":
            return 0
        if self.status == "lost":
            return self.amount if self.withdrawn <= 0 else min(self.withdrawn, self.amount)
        return max(0, min(self.withdrawn, self.amount))


@dataclass(frozen=True)
class ChargeState:
    """A charge as the processor holds it now: the truth money after the payment follows."""

    id: str
    amount: int
    currency: str  # upper case, as purchases store it
    status: str  # succeeded | pending | failed
    payment_id: str | None
    refunds: tuple[Refund, ...] = ()
    disputes: tuple[Dispute, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds if r.status in REFUND_COUNTS)

    @property
    def disputed(self) -> int:
        return sum(d.money_lost for d in self.disputes)

    @property
    def money_back(self) -> int:
        """Money the platform does not keep: refunds plus disputes, never past the charge."""
        return min(self.amount, self.refunded + self.disputed)


class ProviderUnavailable(Exception):
    """The provider did not give a definite answer; ask again with the same idempotency key."""


class RefundRefused(Exception):
    """The provider definitely refused the refund (e.g. the charge is disputed)."""


class PaymentProvider(Protocol):
    name: str

    async def create(
        self, *, amount: int, currency: str, key: str, metadata: dict[str, str]
    ) -> str: ...

    async def confirm(self, payment_id: str, token: str, key: str) -> Payment: ...

    async def retrieve(self, payment_id: str) -> Payment: ...

    async def refund(self, payment_id: str, key: str, amount: int | None = None) -> str: ...

    async def charge(self, charge_id: str) -> ChargeState:
        """The charge as the processor holds it now; LookupError when it has none."""
        ...


class SandboxPaymentProvider:
    """The local and test provider: `tok_visa` succeeds, `tok_threeDSecure` needs the buyer to
    authenticate (never completed here), anything else is declined.

    It keeps its payments and keys in memory, like a real provider keeps them server-side;
    `charges` and `refunds` count money actually moved, which the tests assert on.
    """

    name = "sandbox"
    APPROVE = frozenset({"tok_visa"})

    def __init__(self) -> None:
        # Lambda containers are threads in the tests: calls may come from several loops.
        self._lock = threading.Lock()
        self._payments: dict[str, Payment] = {}
        self._by_key: dict[str, str] = {}
        self._refunds: dict[str, str] = {}
        self._metadata: dict[str, dict[str, str]] = {}
        self._by_charge: dict[str, list[Refund]] = {}
        self.charges: list[Payment] = []
        self.refunds: list[str] = []

    async def create(
        self, *, amount: int, currency: str, key: str, metadata: dict[str, str]
    ) -> str:
        with self._lock:
            if key not in self._by_key:
                payment = Payment(new_id("pay"), "requires_payment_method", amount, currency)
                self._payments[payment.id] = payment
                self._metadata[payment.id] = dict(metadata)
                self._by_key[key] = payment.id
            return self._by_key[key]

    async def confirm(self, payment_id: str, token: str, key: str) -> Payment:
        with self._lock:
            payment = self._payments[payment_id]
            if payment.status != "requires_payment_method":
                return payment  # confirmed before: its outcome, never a second charge
            if token in self.APPROVE:
                payment = Payment(
                    payment.id, SUCCEEDED, payment.amount, payment.currency, new_id("ch")
                )
                self.charges.append(payment)
            elif token == "tok_threeDSecure":  # noqa: S105 - sandbox test token
                secret = f"{payment.id}_secret"
                payment = Payment(
                    payment.id, ACTION, payment.amount, payment.currency, None, None, secret
                )
            else:
                code = "card_declined" if token == "tok_chargeDeclined" else "invalid_token"  # noqa: S105
                payment = Payment(
                    payment.id, DECLINED, payment.amount, payment.currency, None, code
                )
            self._payments[payment.id] = payment
            return payment

    async def retrieve(self, payment_id: str) -> Payment:
        with self._lock:
            payment = self._payments[payment_id]
            meta = tuple(sorted(self._metadata.get(payment_id, {}).items()))
            return replace(payment, metadata=meta)

    async def refund(self, payment_id: str, key: str, amount: int | None = None) -> str:
        with self._lock:
            if key not in self._refunds:
                paid = self._payments.get(payment_id)
                if paid is None or paid.charge_id is None:
                    raise RefundRefused("charge_not_refundable")
                done = self._by_charge.setdefault(paid.charge_id, [])
                left = paid.amount - sum(r.amount for r in done)
                wanted = left if amount is None else amount
                if wanted <= 0 or wanted > left:
                    raise RefundRefused("charge_already_refunded")
                self._refunds[key] = new_id("re")
                done.append(Refund(self._refunds[key], wanted, "succeeded"))
                self.refunds.append(paid.charge_id)
            return self._refunds[key]

    async def charge(self, charge_id: str) -> ChargeState:
        with self._lock:
            paid = next((p for p in self.charges if p.charge_id == charge_id), None)
            if paid is None:
                raise LookupError(f"no charge {charge_id}")
            return ChargeState(
                charge_id,
                paid.amount,
                paid.currency,
                "succeeded",
                paid.id,
                tuple(self._by_charge.get(charge_id, ())),
                metadata=tuple(sorted(self._metadata.get(paid.id, {}).items())),
            )

    def metadata(self, payment_id: str) -> dict[str, Any]:
        return self._metadata.get(payment_id, {})

    # The audit's lists; the sandbox keeps no creation times: every one, whatever the window.
    async def charges_between(self, since: int, until: int) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": p.charge_id} for p in self.charges if p.charge_id]

    async def refunds_between(self, since: int, until: int) -> list[dict[str, Any]]:
        with self._lock:
            return [{"charge": c} for c in self._by_charge]

    async def disputes_between(self, since: int, until: int) -> list[dict[str, Any]]:
        return []


PROVIDERS = ("none", "sandbox", "stripe")


def provider_for(name: str, settings: Any = None) -> PaymentProvider | None:
    """The provider a deployment configured (LIVECOINS_PAYMENT_PROVIDER), or None for "none":
    purchaseCoins then refuses with PAYMENTS_NOT_CONFIGURED and changes nothing."""
    if name == "sandbox":
        return SandboxPaymentProvider()
    if name == "stripe":
        from infra.stripe_payments import StripePaymentProvider  # the library: 0.45 s to import

        return StripePaymentProvider.from_settings(settings)
    if name == "none":
        return None
    raise ValueError(f"unknown payment provider {name!r}: expected one of {', '.join(PROVIDERS)}")
