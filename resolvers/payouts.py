"""Payouts: creators' connected accounts at the payouts processor, withdrawals paid by transfer,
and transfers reversed later (infra/payouts.py, infra/stripe_connect.py).

- **The payout account** is the creator's connected account. `startPayoutOnboarding` creates it
  once (the processor's idempotency key is per creator) and answers a hosted onboarding link,
  on allowed origins only. Its state follows the processor's, never a notification's
  content: every notification, a creator's own look (`payoutAccount`, at most every
  `payout_refresh_seconds` while it is not enabled), a withdrawal request that would be
  refused and a settlement read the account as it is now, and that read is stored unless a
  read that *started* later was stored first (`AccountsRepo.set_payout_state`): the last
  change, always followed by a read, wins.
- **Paying is the transfer** (`pay`, for settleWithdrawal PAID): the account is read (not
  enabled: `PayoutRefused`, nothing asked); the withdrawal is marked as being paid
  (`payoutStartedAt`: from here it cannot be rejected, its money may be gone); the transfer is
  created for the withdrawal's amount to the recorded account, with the withdrawal id as its
  idempotency key; its id is stored as the withdrawal's `payoutReference` as it turns PAID. A
  retry, whoever makes it, finds the transfer (by the same key, or, past the processor's 24
  hours of keys, by its transfer group) and finishes the same one; two admins at once send
  the same key and get the same transfer. A definite refusal is `PayoutRefused`: the
  withdrawal stays PENDING, and the next attempt gets a key of its own (the processor replays
  a refusal under its key).
- **A reversed transfer** (`follow_transfer`) returns to the creator exactly what was reversed
  and not yet returned: the diamonds for the transfer's cumulative `amount_reversed` (all of
  them once it is all reversed, else in proportion, rounded down), minus those already given
  back; one conditional transaction (the withdrawal's returned count as read, the wallet, a
  WITHDRAWAL_RETURNED entry), so duplicate, concurrent and reordered notifications converge.
  A transfer whose withdrawal is still PENDING (its settlement died between the transfer and
  the status write) first finishes that settlement.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from infra import runtime
from infra.accounts import NOT_CONNECTED, is_restricted, payout_status
from infra.config import origin_of
from infra.dynamo import Item, TransactionCancelled, Unavailable, backoff
from infra.ids import iso, new_id, now
from infra.payouts import (
    ENABLED,
    ConnectedAccount,
    OnboardingLink,
    PayoutEvent,
    PayoutProvider,
    PayoutRefusal,
    ProviderUnavailable,
    Transfer,
    transfer_key,
)
from infra.services import Services
from infra.withdrawals import PENDING
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import (
    InvalidInput,
    InvalidState,
    PayoutRefused,
    PayoutsNotConfigured,
    TryAgain,
    restricted,
)
from resolvers.purchases import ask_provider

logger = logging.getLogger("livecoins")
T = TypeVar("T")
MAX_URL = 2048
PAID = "PAID"


@dataclass(frozen=True)
class PayoutView:
    status: str
    requirements_due: tuple[str, ...]


def view(account: Item) -> PayoutView:
    """The payout account of an account item, as last read from the processor."""
    status = payout_status(account)
    due = () if status in (NOT_CONNECTED, ENABLED) else tuple(account.get("payoutDue") or ())
    return PayoutView(status, due)


def _provider(services: Services) -> PayoutProvider:
    if services.payouts is None:
        raise PayoutsNotConfigured(
            "This deployment pays withdrawals by hand: no payouts processor is configured."
        )
    return services.payouts


async def _ask(services: Services, call: Callable[[], Awaitable[T]]) -> T:
    """A processor call, asked again (same idempotency key) while it gives no answer, until
    the request's deadline: then TRY_AGAIN, and the caller's retry asks once more."""
    return await ask_provider(
        services,
        call,
        "payouts processor",
        "The payouts processor did not answer; nothing was lost. Retry.",
    )


def _millis() -> int:
    return int(runtime.current().time() * 1000)


# --- the payout account -------------------------------------------------------------------
async def store_state(
    services: Services, account: Item, state: ConnectedAccount, started: int, touch: bool = True
) -> Item:
    """The processor's view of `account`'s connected account, read from `started` (ms), stored
    unless a read that started later was stored first; the account item after. Without `touch`
    an unchanged state is not written again."""
    for _ in range(4):
        was_enabled = bool(account.get("payoutEnabledAt"))
        status = state.status(was_enabled)
        due = list(state.requirements_due)
        unchanged = account.get("payoutStatus") == status and account.get("payoutDue", []) == due
        if (unchanged and not touch) or account.get("payoutCheckedAt", -1) >= started:
            return account
        updated = await services.accounts.set_payout_state(
            account["id"], state.id, status, due, started, was_enabled
        )
        if updated is not None:
            if status != account.get("payoutStatus"):
                logger.info(
                    "payout account state",
                    extra={"account": account["id"], "status": status, "due": due},
                )
            return updated
        found = await services.accounts.get(account["id"], consistent=True)
        if found is None or found.get("payoutAccountId") != state.id:
            return found or account
        account = found  # a later read was stored, or it was enabled since: decide again
    return account


async def payout_account(ctx: Context, account: Item) -> PayoutView:
    """`Account.payoutAccount`: the stored state; one not enabled and older than
    payout_refresh_seconds is read again first (the creator back from onboarding sees it before
    the notification lands). If the processor does not answer, the stored state."""
    services = ctx.services
    current = view(account)
    if services.payouts is None or current.status in (NOT_CONNECTED, ENABLED):
        return current
    started = _millis()
    if (
        started - account.get("payoutCheckedAt", 0)
        < services.settings.payout_refresh_seconds * 1000
    ):
        return current
    try:  # one try: a look at the account does not wait out the processor's troubles
        state = await services.payouts.account(account["payoutAccountId"])
        return view(await store_state(services, account, state, started))
    except (ProviderUnavailable, Unavailable, LookupError) as error:
        logger.warning("payout account not refreshed: %r", error, extra={"account": account["id"]})
        return current


def _url(value: str, field: str, origins: tuple[str, ...]) -> str:
    """No open redirect: an https URL (http on a loopback host: the local server) whose origin
    this deployment allows."""
    origin = origin_of(value) if len(value) <= MAX_URL else None
    if origin is None or origin not in origins:
        raise InvalidInput(
            f"{field} must be an https URL on an origin this deployment allows.", field=field
        )
    return value


async def start_onboarding(
    ctx: Context, return_url: str, refresh_url: str
) -> tuple[OnboardingLink, PayoutView]:
    """Create the creator's connected account (once) and answer a hosted onboarding link; a
    later call resumes it with a new link."""
    identity = ctx.require_identity()
    origins = ctx.services.settings.payout_origins
    _url(return_url, "returnUrl", origins)
    _url(refresh_url, "refreshUrl", origins)
    ctx.require_adult("receive payouts")
    services = ctx.services
    provider = _provider(services)
    account = await ctx.account()
    if is_restricted(account):
        raise restricted()
    started = _millis()
    connected: str | None = account.get("payoutAccountId")
    if connected:
        existing = connected
        state = await _ask(services, lambda: provider.account(existing))
    else:
        name = account.get("displayName") or identity.sub
        state = await _ask(
            services,
            lambda: provider.create_account(
                account_id=identity.sub, display_name=name, key=f"payout-account:{identity.sub}"
            ),
        )
        linked = await services.accounts.link_payout_account(identity.sub, state.id, iso(now()))
        account = linked or account
        connected = account.get("payoutAccountId") or state.id
        if connected != state.id:  # another request linked one first: that one is the account
            state = await _ask(services, lambda: provider.account(connected))
        logger.info(
            "payout account created", extra={"account": identity.sub, "connected": connected}
        )
    account = await store_state(services, account, state, started)
    link = await _ask(
        services,
        lambda: provider.onboarding_link(connected, return_url=return_url, refresh_url=refresh_url),
    )
    return link, view(account)


async def gate(services: Services, account: Item) -> str:
    """The payout account's status a withdrawal request is decided on: the stored one, read
    again from the processor when it is not ENABLED (the creator may have just finished
    onboarding). Processor trouble is TRY_AGAIN, never a refusal."""
    status = payout_status(account)
    if status in (ENABLED, NOT_CONNECTED):
        return status
    started, connected = _millis(), account["payoutAccountId"]
    provider = _provider(services)
    try:
        state = await _ask(services, lambda: provider.account(connected))
    except LookupError:
        return status
    await store_state(services, account, state, started, touch=False)
    return state.status(bool(account.get("payoutEnabledAt")))


# --- paying a withdrawal -----------------------------------------------------------------
REFUSALS = {
    "no_payout_account": "The creator has no payout account; the withdrawal stays pending.",
    "insufficient_capabilities_for_transfer": "The processor refused: the creator's account "
    "cannot receive transfers now. The withdrawal stays pending.",
    "balance_insufficient": "The processor refused: the platform's balance cannot cover this "
    "transfer now. Add funds, then pay it again.",
    "account_invalid": "The processor refused: the creator's payout account no longer exists.",
}


def _refused(code: str) -> PayoutRefused:
    if code.startswith("not_enabled:"):
        status = code.split(":", 1)[1]
        return PayoutRefused(
            f"The creator's payouts are not enabled ({status}); the withdrawal stays pending "
            "until they are, or reject it."
        )
    return PayoutRefused(REFUSALS.get(code, f"The processor refused the transfer ({code})."))


async def _check_destination(services: Services, withdrawal: Item) -> str:
    """The connected account to pay, after reading it at the processor: PayoutRefused unless
    its payouts are enabled now (a state that changed is stored on the way)."""
    provider = _provider(services)
    destination = withdrawal.get("payoutAccount")
    account: Item | None = None
    if not destination:  # requested before payouts were configured
        account = await services.accounts.get(withdrawal["accountId"], consistent=True)
        destination = (account or {}).get("payoutAccountId")
        if not destination:
            raise _refused("no_payout_account")
    started = _millis()
    try:
        state = await _ask(services, lambda: provider.account(destination))
    except LookupError as error:
        raise _refused("account_invalid") from error
    if state.enabled:
        return str(destination)
    account = account or await services.accounts.get(withdrawal["accountId"], consistent=True)
    status = state.status(True)
    if account is not None and account.get("payoutAccountId") == destination:
        account = await store_state(services, account, state, started)
        status = payout_status(account)
    raise _refused(f"not_enabled:{status}")


async def pay(services: Services, withdrawal: Item, admin: str) -> Item:
    """settleWithdrawal PAID through the processor: the transfer, exactly once."""
    provider = _provider(services)
    wid = withdrawal["id"]
    if withdrawal["status"] == PAID:
        return withdrawal
    if withdrawal["status"] != PENDING:
        raise InvalidState(f"This withdrawal is already {withdrawal['status']}.")
    if not withdrawal.get("payoutStartedAt"):
        destination = await _check_destination(services, withdrawal)
    else:  # an earlier settlement asked for its transfer: finish that one, whatever the account
        destination = withdrawal["payoutAccount"]
    at = iso(now())
    started = await services.withdrawals.start_payout(wid, admin, destination, at)
    if started is None:  # settled meanwhile
        found = await services.withdrawals.get(wid)
        if found is not None and found["status"] == PAID:
            return found
        raise InvalidState(f"This withdrawal is already {(found or {}).get('status')}.")
    resumed = started["payoutStartedAt"] != at
    attempt = int(started["payoutAttempt"])
    destination = started["payoutAccount"]
    try:
        transfer = await _ask(services, lambda: provider.find_transfer(wid)) if resumed else None
        if transfer is None:
            transfer = await _ask(
                services,
                lambda: provider.transfer(
                    amount=started["amount"],
                    currency=started["currency"],
                    destination=destination,
                    withdrawal_id=wid,
                    key=transfer_key(wid, attempt),
                ),
            )
    except PayoutRefusal as refusal:
        await services.withdrawals.refuse_payout(wid, attempt, refusal.code, iso(now()))
        logger.warning(
            "the processor refused a withdrawal's transfer",
            extra={"withdrawalId": wid, "code": refusal.code, "attempt": attempt},
        )
        raise _refused(refusal.code) from refusal
    return await _paid(services, started, transfer, admin)


def _matches(withdrawal: Item, transfer: Transfer) -> bool:
    return (
        transfer.amount == withdrawal["amount"]
        and transfer.currency == withdrawal["currency"]
        and transfer.destination == withdrawal.get("payoutAccount")
    )


async def _paid(services: Services, withdrawal: Item, transfer: Transfer, admin: str) -> Item:
    """Record the transfer on the withdrawal as it turns PAID (or find it recorded)."""
    wid = withdrawal["id"]
    if not _matches(withdrawal, transfer):
        logger.error(
            "a withdrawal's transfer differs from it",
            extra={"withdrawalId": wid, "transfer": transfer.id},
        )
    paid = await services.withdrawals.mark_paid(wid, transfer.id, iso(now()), admin)
    if paid is None:
        found = await services.withdrawals.get(wid)
        if found is not None and found["status"] == PAID:
            if found.get("payoutReference") != transfer.id:  # the audit reports it too
                logger.error(
                    "a withdrawal PAID by another transfer",
                    extra={"withdrawalId": wid, "transfer": transfer.id},
                )
            return found
        raise RuntimeError(
            f"withdrawal {wid} was not PENDING while its transfer {transfer.id} exists"
        )
    services.metrics["WithdrawalsTransferred"] += 1
    logger.info(
        "admin settled a withdrawal",
        extra={"admin": admin, "withdrawalId": wid, "outcome": PAID, "transfer": transfer.id},
    )
    return paid


# --- after the transfer: what the processor says ----------------------------------------
def returned_for(withdrawal: Item, reversed_cents: int) -> int:
    """Diamonds a reversal of `reversed_cents` of the withdrawal's transfer gives back: all of
    them once all is reversed, else in proportion, rounded down (never in the creator's favour,
    as the cash value was)."""
    if reversed_cents >= withdrawal["amount"]:
        return int(withdrawal["diamonds"])
    return int(withdrawal["diamonds"]) * max(0, reversed_cents) // int(withdrawal["amount"])


async def converge(services: Services, withdrawal: Item, transfer: Transfer) -> Item:
    """The withdrawal as its transfer says: PAID by it (a settlement that died after the
    transfer), and the diamonds for what was reversed given back, once."""
    wid, deadline, retry = withdrawal["id"], services.dynamo.deadline(), 0
    while True:
        if withdrawal["status"] == PENDING and withdrawal.get("payoutStartedAt"):
            if not _matches(withdrawal, transfer):
                logger.error(
                    "a transfer names a withdrawal it does not pay", extra={"withdrawalId": wid}
                )
                return withdrawal
            withdrawal = await _paid(
                services, withdrawal, transfer, withdrawal.get("payoutBy") or "processor"
            )
        if withdrawal["status"] != PAID or withdrawal.get("payoutReference") != transfer.id:
            logger.warning(
                "a transfer names a withdrawal it did not pay",
                extra={
                    "withdrawalId": wid,
                    "transfer": transfer.id,
                    "status": withdrawal["status"],
                },
            )
            return withdrawal
        before = int(withdrawal.get("returnedDiamonds", 0))
        after = returned_for(withdrawal, transfer.reversed)
        if after <= before:  # reversals only grow: nothing more to give back
            return withdrawal
        owner, at = withdrawal["accountId"], iso(now())
        try:
            await services.dynamo.transact(
                [
                    services.withdrawals.returned_action(
                        wid, transfer.id, before, after, transfer.reversed
                    ),
                    services.accounts.add_diamonds_action(owner, after - before),
                    services.ledger.put_action(
                        entry_id=new_id("tx"),
                        account_id=owner,
                        kind="WITHDRAWAL_RETURNED",
                        coins=0,
                        diamonds=after - before,
                        reference_id=wid,
                        created_at=at,
                    ),
                ]
            )
        except TransactionCancelled as cancelled:
            if not cancelled.failed(0):
                raise
            found = await services.withdrawals.get(wid)  # another delivery gave some back
            if found is None:
                raise RuntimeError(f"withdrawal {wid} vanished") from cancelled
            withdrawal = found
            try:
                await backoff(retry, deadline, "withdrawal returned concurrently")
            except Unavailable as error:
                raise TryAgain("The withdrawal kept changing; deliver again.") from error
            retry += 1
            continue
        services.metrics["DiamondsReturned"] += after - before
        logger.info(
            "a reversed transfer returned diamonds",
            extra={"withdrawalId": wid, "transfer": transfer.id, "diamonds": after - before},
        )
        return {**withdrawal, "returnedDiamonds": after, "reversedAmount": transfer.reversed}


async def follow_transfer(services: Services, transfer_id: str) -> Item | None:
    """After any notification about a transfer: read it, and converge its withdrawal."""
    provider = _provider(services)
    try:
        transfer = await _ask(services, lambda: provider.transfer_state(transfer_id))
    except LookupError:
        logger.warning("a notification about an unknown transfer", extra={"transfer": transfer_id})
        return None
    wid = transfer.withdrawal_id or ""
    withdrawal = (
        await services.withdrawals.get(wid) if validation.is_minted_id(wid, "wdr") else None
    )
    if withdrawal is None:
        logger.warning("a transfer of no withdrawal", extra={"transfer": transfer_id})
        return None
    return await converge(services, withdrawal, transfer)


async def follow_account(services: Services, connected_id: str) -> Item | None:
    """After any notification about a connected account: read it, and store its state on the
    account it was created for."""
    provider = _provider(services)
    started = _millis()
    try:
        state = await _ask(services, lambda: provider.account(connected_id))
    except LookupError:
        logger.warning("a notification about an unknown account", extra={"connected": connected_id})
        return None
    owner = state.account_id or ""
    account = (
        await services.accounts.get(owner, consistent=True)
        if validation.is_account_id(owner)
        else None
    )
    if account is None or account.get("payoutAccountId") != connected_id:
        logger.warning("a connected account of no account", extra={"connected": connected_id})
        return None
    return await store_state(services, account, state, started)


ACCOUNT_EVENTS = ("account.updated", "account.application.deauthorized")


async def route(services: Services, event: PayoutEvent) -> None:
    """Which account or transfer the notification is about; the rest is read from Stripe."""
    kind = event.type
    if not event.object_id:
        logger.info("ignored a payouts event without an object", extra={"type": kind})
    elif kind.startswith("transfer."):
        await follow_transfer(services, event.object_id)
    elif kind in ACCOUNT_EVENTS or kind.startswith(("v2.core.account[", "v2.core.account.")):
        await follow_account(services, event.object_id)
    else:
        logger.info("ignored a payouts event", extra={"type": kind})
