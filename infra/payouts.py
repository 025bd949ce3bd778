"""Payout providers: where creators' withdrawals are paid. The sandbox, and Stripe Connect
(infra/stripe_connect.py), behind one interface.

Each creator has one connected account at the processor. Its hosted onboarding collects the
creator's identity, bank and tax details; the platform then pays a withdrawal by *transferring*
its amount to the connected account, from whose balance the processor pays the creator's bank.

What LiveCoins reads of them:
- `ConnectedAccount`: the account as the processor holds it now: whether it can receive
  transfers and pay them out, why not, and what the creator still has to provide. `status`
  maps it to the contract's PayoutAccountStatus.
- `Transfer`: a transfer as it is now, with the cumulative amount reversed since (a reversal
  takes money back from the creator's balance: `resolvers/payouts.py` returns the diamonds).

A call fails three ways, like a payment provider's (infra/payments.py):
- a definite refusal: `PayoutRefusal(code)` (the account cannot receive transfers, the
  platform's balance cannot cover it, ...): nothing was transferred;
- `ProviderUnavailable`: no answer (a timeout, a 5xx, a rate limit): the call may have acted,
  and it is asked again with the same idempotency key;
- `LookupError`: the processor has no such object.

This module imports nothing beyond the standard library and infra.payments: it is on the
GraphQL function's import path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Protocol

from infra import runtime
from infra.ids import new_id
from infra.payments import ProviderUnavailable

NOT_CONNECTED, ONBOARDING, ENABLED, RESTRICTED = (
    "NOT_CONNECTED",
    "ONBOARDING",
    "ENABLED",
    "RESTRICTED",
)
STATUSES = (NOT_CONNECTED, ONBOARDING, ENABLED, RESTRICTED)
# Capability statuses after which the processor will not change its mind by itself: the
# creator has to act, or support has to (Stripe's v2 recipient capabilities).
FOR_GOOD = frozenset({"rejected", "unsupported"})


@dataclass(frozen=True)
class ConnectedAccount:
    """A creator's connected account as the processor holds it now."""

    id: str
    transfers: str  # receiving transfers: active | pending | restricted | rejected | unsupported
    payouts: str | None  # paying the balance out to the bank (None: not reported separately)
    reasons: tuple[str, ...] = ()  # the processor's codes for why a capability is not active
    requirements_due: tuple[str, ...] = ()  # what the creator must still provide, now or past due
    closed: bool = False
    account_id: str | None = None  # the LiveCoins account it was created for (its metadata)

    @property
    def enabled(self) -> bool:
        return not self.closed and self.transfers == "active" and self.payouts in ("active", None)

    def status(self, was_enabled: bool) -> str:
        """ENABLED when it can receive a transfer and pay it out; RESTRICTED when the processor
        disabled it (rejected, unsupported, closed, or once enabled and no longer: information
        overdue, a verification failed); else ONBOARDING (the creator has not finished, or the
        processor is still verifying)."""
        if self.enabled:
            return ENABLED
        rejected = {self.transfers, self.payouts} & FOR_GOOD or any(
            code.startswith(("rejected_", "unsupported_")) for code in self.reasons
        )
        if self.closed or rejected or was_enabled:
            return RESTRICTED
        return ONBOARDING


@dataclass(frozen=True)
class OnboardingLink:
    url: str
    expires_at: float  # epoch seconds


@dataclass(frozen=True)
class Transfer:
    """A transfer to a connected account as the processor holds it now."""

    id: str
    amount: int
    currency: str  # upper case, as withdrawals store it
    destination: str
    withdrawal_id: str | None  # the withdrawal it pays (its metadata)
    reversed: int = 0  # cumulative amount reversed so far
    created: float = 0.0


class PayoutRefusal(Exception):
    """The processor definitely refused (nothing was transferred); `code` is its reason."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


@dataclass(frozen=True)
class PayoutEvent:
    """A verified notification: only which object to read again."""

    id: str
    type: str
    object_id: str


def transfer_key(withdrawal_id: str, attempt: int) -> str:
    """The idempotency key of a withdrawal's transfer: its id; after a definite refusal the
    next attempt needs a key of its own (a processor replays a refusal under its key)."""
    return withdrawal_id if attempt <= 1 else f"{withdrawal_id}:{attempt}"


class PayoutProvider(Protocol):
    name: str

    async def create_account(
        self, *, account_id: str, display_name: str, key: str
    ) -> ConnectedAccount:
        """The creator's connected account, created once per key."""
        ...

    async def account(self, connected_id: str) -> ConnectedAccount:
        """The account as it is now; LookupError when there is none."""
        ...

    async def onboarding_link(
        self, connected_id: str, *, return_url: str, refresh_url: str
    ) -> OnboardingLink: ...

    async def transfer(
        self, *, amount: int, currency: str, destination: str, withdrawal_id: str, key: str
    ) -> Transfer:
        """Transfer once per key; PayoutRefusal when refused for good."""
        ...

    async def find_transfer(self, withdrawal_id: str) -> Transfer | None:
        """The transfer made for a withdrawal, whatever key made it (a retry past the
        processor's memory of keys)."""
        ...

    async def transfer_state(self, transfer_id: str) -> Transfer:
        """The transfer as it is now; LookupError when there is none."""
        ...

    async def transfers_between(self, since: float, until: float) -> list[Transfer]:
        """Every transfer created in [since, until) (epoch seconds), for the audit."""
        ...


class SandboxPayoutProvider:
    """The local and test processor: a connected account is ENABLED as soon as it exists
    (onboarding is instant: the link goes straight back to `return_url`), transfers and their
    reversals live in memory. `restrict`, `reinstate` and `reverse` play the processor's own
    acts in tests."""

    name = "sandbox"

    def __init__(self) -> None:
        self._lock = threading.Lock()  # Lambda containers are threads in the tests
        self.accounts: dict[str, ConnectedAccount] = {}
        self.transfers: dict[str, Transfer] = {}
        self._by_key: dict[str, str] = {}
        self._account_keys: dict[str, str] = {}
        self._refused: dict[str, str] = {}  # a refusal is replayed under its key, as Stripe does

    async def create_account(
        self, *, account_id: str, display_name: str, key: str
    ) -> ConnectedAccount:
        with self._lock:
            if key not in self._account_keys:
                account = ConnectedAccount(
                    new_id("acct"), "active", "active", account_id=account_id
                )
                self.accounts[account.id] = account
                self._account_keys[key] = account.id
            return self.accounts[self._account_keys[key]]

    async def account(self, connected_id: str) -> ConnectedAccount:
        with self._lock:
            if connected_id not in self.accounts:
                raise LookupError(connected_id)
            return self.accounts[connected_id]

    async def onboarding_link(
        self, connected_id: str, *, return_url: str, refresh_url: str
    ) -> OnboardingLink:
        return OnboardingLink(return_url, runtime.current().time() + 300)

    async def transfer(
        self, *, amount: int, currency: str, destination: str, withdrawal_id: str, key: str
    ) -> Transfer:
        with self._lock:
            if key in self._by_key:
                return self.transfers[self._by_key[key]]
            if key in self._refused:
                raise PayoutRefusal(self._refused[key])
            account = self.accounts.get(destination)
            if account is None or account.transfers != "active" or account.closed:
                self._refused[key] = "insufficient_capabilities_for_transfer"
                raise PayoutRefusal(self._refused[key])
            transfer = Transfer(
                new_id("tr"),
                amount,
                currency.upper(),
                destination,
                withdrawal_id,
                created=runtime.current().time(),
            )
            self.transfers[transfer.id] = transfer
            self._by_key[key] = transfer.id
            return transfer

    async def find_transfer(self, withdrawal_id: str) -> Transfer | None:
        with self._lock:
            return next(
                (t for t in self.transfers.values() if t.withdrawal_id == withdrawal_id), None
            )

    async def transfer_state(self, transfer_id: str) -> Transfer:
        with self._lock:
            if transfer_id not in self.transfers:
                raise LookupError(transfer_id)
            return self.transfers[transfer_id]

    async def transfers_between(self, since: float, until: float) -> list[Transfer]:
        with self._lock:
            return [t for t in self.transfers.values() if since <= t.created < until]

    # --- the processor's own acts (tests) ------------------------------------------------
    def restrict(self, connected_id: str, reason: str = "requirements_past_due") -> None:
        with self._lock:
            account = self.accounts[connected_id]
            self.accounts[connected_id] = replace(
                account,
                transfers="restricted",
                payouts="restricted",
                reasons=(reason,),
                requirements_due=("individual.verification.document",),
            )

    def reinstate(self, connected_id: str) -> None:
        with self._lock:
            account = self.accounts[connected_id]
            self.accounts[connected_id] = replace(
                account, transfers="active", payouts="active", reasons=(), requirements_due=()
            )

    def reverse(self, transfer_id: str, amount: int) -> Transfer:
        with self._lock:
            transfer = self.transfers[transfer_id]
            left = transfer.amount - transfer.reversed
            self.transfers[transfer_id] = replace(
                transfer, reversed=transfer.reversed + min(amount, left)
            )
            return self.transfers[transfer_id]


PROVIDERS = ("none", "sandbox", "stripe")


def payout_provider_for(name: str, settings: Any = None) -> PayoutProvider | None:
    """The payouts processor a deployment configured (LIVECOINS_PAYOUTS_PROVIDER), or None for
    "none": withdrawals are then paid by hand outside LiveCoins, as before this processor."""
    if name == "sandbox":
        return SandboxPayoutProvider()
    if name == "stripe":
        from infra.stripe_connect import StripeConnectProvider  # the library: 0.45 s to import

        return StripeConnectProvider.from_settings(settings)
    if name == "none":
        return None
    raise ValueError(f"unknown payouts provider {name!r}: expected one of {', '.join(PROVIDERS)}")


__all__ = ["ProviderUnavailable"]
