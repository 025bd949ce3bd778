"""Payouts in the fault simulator: a fake Stripe Connect the simulated world drives, what the
workload does with it, and the invariants that hold it to the processor.

- `SimConnect`: the processor's side, shaped like Stripe Connect (infra/payouts.py's view of
  it): connected accounts whose onboarding may stall (requirements due stay due) and recover,
  accounts restricted mid-review and reinstated, transfers created once per idempotency key
  (a refusal is replayed under its key, as Stripe does), found by withdrawal, reversed in
  part or in full (`reversed` is cumulative), and signed thin-event deliveries for the payouts
  endpoint. Every change of an account's state is logged with the store's write count, so a
  refusal can be justified by a state the account had *during* the request.
- `ConnectClient`: a container's client of it: every call is a scheduled step that may meet a
  fault (a timeout before or after it acted, a crash before or after, and for a transfer a
  definite refusal: the platform's balance could not cover it, remembered under the key).
- `PayoutsWorld`, `PayoutsWorkload`: mixins for tests/sim/world.py's `World` and
  tests/sim/workload.py's `Workload` that add all of it; `simulate(..., payouts=True)`
  (tests/sim/run.py; `make sim` has it on) composes them with the simulator's own:
  - creators start or resume onboarding now and then (those who never do keep meeting
    PayoutAccountRequired), and admins pay withdrawals still waiting for review;
  - about one act in three is the Connect processor's: an onboarding completes or stalls, an
    enabled account is restricted mid-review or reinstated, a transfer is reversed in part or
    in full; each queues its signed thin event for `/webhooks/stripe-connect` (some twice at
    once, some forged);
  - answers about payouts are justified from the store and the processor's history
    (`justify_payouts`), and after the last deliveries `PayoutChecks.final` and the
    `livecoins audit` of withdrawals against transfers run.
- `PayoutChecks`: running invariants (a store listener) and the final ones, and the
  compensation `Totals` needs for returned diamonds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from infra.config import Settings
from infra.dynamo import Dynamo, from_item, to_item
from infra.payouts import (
    ConnectedAccount,
    OnboardingLink,
    PayoutEvent,
    PayoutRefusal,
    ProviderUnavailable,
    Transfer,
    transfer_key,
)
from infra.services import Services
from resolvers.payouts import returned_for

ORIGIN = "https://app.livecoins.sim"
RETURN = f"{ORIGIN}/app/#/creator?payouts=return"
CONNECT_PATH = "/webhooks/stripe-connect"
ONBOARD = """mutation O($i: StartPayoutOnboardingInput!) { r: startPayoutOnboarding(input: $i) {
  __typename ... on PayoutOnboardingStarted { url payoutAccount { status requirementsDue } }
  ... on UserError { message } } }"""
DUE = (
    "identity.individual.verification.document",
    "configuration.recipient.default_outbound_destination",
)
# How an injected fault on a Connect call is split (the total rate is the world's).
PAYOUT_FAULTS = {
    "timeout-before": 35,
    "timeout-after": 35,
    "refuse": 10,
    "crash-before": 10,
    "crash-after": 10,
}


def payout_settings(settings: Settings | None = None) -> Settings:
    """Settings that let onboarding return to the simulated app's origin."""
    return replace(settings or Settings(), payout_return_origins=(ORIGIN,))


@dataclass
class _Account:
    id: str
    account_id: str
    transfers: str = "restricted"
    payouts: str = "restricted"
    reasons: tuple[str, ...] = ("requirements_past_due",)
    due: tuple[str, ...] = DUE
    closed: bool = False

    def view(self) -> ConnectedAccount:
        return ConnectedAccount(
            self.id,
            self.transfers,
            self.payouts,
            self.reasons,
            self.due,
            self.closed,
            self.account_id,
        )


@dataclass
class SimConnect:
    """Stripe Connect as the simulated world has it."""

    SECRET = b"sim-connect-secret"

    accounts: dict[str, _Account] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)  # account creation key -> account id
    transfers: dict[str, Transfer] = field(default_factory=dict)
    transfer_keys: dict[str, str] = field(default_factory=dict)  # key -> transfer id
    refused: dict[str, str] = field(default_factory=dict)  # key -> refusal code, replayed
    # account id -> [(store write count, enabled)] from its creation on
    history: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)
    created_at: dict[str, int] = field(default_factory=dict)  # LiveCoins account -> writes
    announced: set[str] = field(default_factory=set)  # transfers whose created event is queued
    writes: Any = lambda: 0  # the store's write count now (the workload's)
    _n: int = 0

    def _next(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_sim{self._n}"

    def _log(self, account: _Account) -> None:
        self.history.setdefault(account.id, []).append((self.writes(), account.view().enabled))

    # --- the API the code under test calls --------------------------------------------
    def create_account(self, account_id: str, key: str) -> ConnectedAccount:
        if key not in self.by_key:
            account = _Account(self._next("acct"), account_id)
            self.accounts[account.id] = account
            self.by_key[key] = account.id
            self.created_at.setdefault(account_id, self.writes())
            self._log(account)
        return self.accounts[self.by_key[key]].view()

    def account(self, connected_id: str) -> ConnectedAccount:
        if connected_id not in self.accounts:
            raise LookupError(connected_id)
        return self.accounts[connected_id].view()

    def onboarding_link(self, connected_id: str, return_url: str) -> OnboardingLink:
        if connected_id not in self.accounts:
            raise LookupError(connected_id)
        return OnboardingLink(f"https://connect.stripe.sim/setup/{self._next('link')}", 0.0)

    def transfer(
        self,
        amount: int,
        currency: str,
        destination: str,
        withdrawal_id: str,
        key: str,
        refuse: bool = False,
    ) -> Transfer:
        if key in self.transfer_keys:
            return self.transfers[self.transfer_keys[key]]
        if key in self.refused:
            raise PayoutRefusal(self.refused[key])
        account = self.accounts.get(destination)
        code = None
        if refuse:
            code = "balance_insufficient"
        elif account is None:
            code = "account_invalid"
        elif account.closed or account.transfers != "active":
            code = "insufficient_capabilities_for_transfer"
        if code is not None:
            self.refused[key] = code
            raise PayoutRefusal(code)
        transfer = Transfer(self._next("tr"), amount, currency.upper(), destination, withdrawal_id)
        self.transfers[transfer.id] = transfer
        self.transfer_keys[key] = transfer.id
        return transfer

    def find_transfer(self, withdrawal_id: str) -> Transfer | None:
        return next((t for t in self.transfers.values() if t.withdrawal_id == withdrawal_id), None)

    def transfer_state(self, transfer_id: str) -> Transfer:
        if transfer_id not in self.transfers:
            raise LookupError(transfer_id)
        return self.transfers[transfer_id]

    # --- the processor's own acts -------------------------------------------------------
    def complete(self, connected_id: str) -> None:
        """Onboarding finished and verified: payouts enabled."""
        account = self.accounts[connected_id]
        if not account.closed:
            account.transfers, account.payouts, account.reasons, account.due = (
                "active",
                "active",
                (),
                (),
            )
            self._log(account)

    def stall(self, connected_id: str) -> None:
        """The creator stopped halfway, or Stripe asks for a document again."""
        account = self.accounts[connected_id]
        account.transfers, account.payouts = "restricted", "restricted"
        account.reasons, account.due = ("requirements_past_due",), DUE[:1]
        self._log(account)

    def restrict(self, connected_id: str, code: str = "requirements_past_due") -> None:
        """Payouts disabled mid-review (information overdue, or rejected for good)."""
        account = self.accounts[connected_id]
        account.transfers, account.payouts, account.reasons = "restricted", "restricted", (code,)
        account.due = DUE[:1] if code == "requirements_past_due" else ()
        self._log(account)

    def reverse(self, transfer_id: str, amount: int) -> Transfer:
        transfer = self.transfers[transfer_id]
        more = min(amount, transfer.amount - transfer.reversed)
        self.transfers[transfer_id] = replace(transfer, reversed=transfer.reversed + more)
        return self.transfers[transfer_id]

    # --- deliveries to the payouts endpoint ---------------------------------------------
    def delivery(self, kind: str, object_id: str) -> tuple[str, str]:
        payload = json.dumps(
            {
                "id": self._next("evt"),
                "object": "v2.core.event",
                "type": kind,
                "related_object": {"id": object_id},
            }
        )
        return payload, hmac.new(self.SECRET, payload.encode(), hashlib.sha256).hexdigest()

    def event(self, payload: bytes, signature: str | None) -> PayoutEvent:
        from infra.stripe_connect import parse_event

        expected = hmac.new(self.SECRET, payload, hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(expected, signature):
            raise ValueError("the signature does not verify")
        return parse_event(payload)

    # --- what the checks ask --------------------------------------------------------------
    def disabled_since(self, connected_id: str | None, since: int) -> bool:
        """Whether the account was not enabled at some moment from store write `since` on."""
        history = self.history.get(connected_id or "")
        if not history:
            return True
        before = [enabled for at, enabled in history if at <= since]
        after = [enabled for at, enabled in history if at > since]
        return (before and not before[-1]) or any(not enabled for enabled in after)

    async def transfers_between(self, since: float, until: float) -> list[Transfer]:
        return list(self.transfers.values())


class ConnectClient:
    """A container's client of `SimConnect`: every call parks, and may meet a fault."""

    name = "sim"

    def __init__(self, container: Any) -> None:
        self.container = container

    @property
    def _connect(self) -> SimConnect:
        return self.container.world.connect  # type: ignore[no-any-return]

    async def _step(self, label: str, act: Any, acts: bool = True) -> Any:
        from tests.sim.scheduler import Crash

        world = self.container.world

        def run(parked: Any) -> Any:
            fault = world.pick(PAYOUT_FAULTS, lambda kind: kind != "refuse" or label == "transfer")
            if fault is None or fault == "refuse":
                return act(fault == "refuse")
            if fault.endswith("-after") and acts:
                act(False)
            if fault.startswith("crash"):
                world.crash(self.container)
                raise Crash("payouts")
            raise ProviderUnavailable(fault)

        return await world.step(f"connect.{label}", self.container, run)

    async def create_account(
        self, *, account_id: str, display_name: str, key: str
    ) -> ConnectedAccount:
        return await self._step(  # type: ignore[no-any-return]
            "create_account", lambda refuse: self._connect.create_account(account_id, key)
        )

    async def account(self, connected_id: str) -> ConnectedAccount:
        return await self._step(  # type: ignore[no-any-return]
            "account", lambda refuse: self._connect.account(connected_id), acts=False
        )

    async def onboarding_link(
        self, connected_id: str, *, return_url: str, refresh_url: str
    ) -> OnboardingLink:
        return await self._step(  # type: ignore[no-any-return]
            "link", lambda refuse: self._connect.onboarding_link(connected_id, return_url)
        )

    async def transfer(
        self, *, amount: int, currency: str, destination: str, withdrawal_id: str, key: str
    ) -> Transfer:
        return await self._step(  # type: ignore[no-any-return]
            "transfer",
            lambda refuse: self._connect.transfer(
                amount, currency, destination, withdrawal_id, key, refuse
            ),
        )

    async def find_transfer(self, withdrawal_id: str) -> Transfer | None:
        return await self._step(  # type: ignore[no-any-return]
            "find_transfer", lambda refuse: self._connect.find_transfer(withdrawal_id), acts=False
        )

    async def transfer_state(self, transfer_id: str) -> Transfer:
        return await self._step(  # type: ignore[no-any-return]
            "transfer_state", lambda refuse: self._connect.transfer_state(transfer_id), acts=False
        )

    async def transfers_between(self, since: float, until: float) -> list[Transfer]:
        return await self._connect.transfers_between(since, until)

    def event(self, payload: bytes, signature: str | None) -> PayoutEvent:
        """A delivery's verification: local, so no call and no fault."""
        return self._connect.event(payload, signature)


# --- the invariants ------------------------------------------------------------------------
class PayoutChecks:
    """Withdrawals held to the processor's transfers, at every write and at the end."""

    def __init__(self, connect: SimConnect, prefix: str, totals: Any = None) -> None:
        self.connect = connect
        self.prefix = prefix
        self.totals = totals  # compensated for returned diamonds (see the module's docstring)
        self.violations: list[str] = []
        self.reached: Counter[str] = Counter()
        # when (store writes) each withdrawal's payoutStartedAt came and went, and each
        # account's payout account was linked: what a refusal may be justified by
        self.started: dict[str, list[tuple[int, bool]]] = {}
        self.linked_at: dict[str, int] = {}

    def started_since(self, withdrawal_id: str, since: int) -> bool:
        """Whether a transfer of the withdrawal was asked for at some moment from `since`."""
        history = self.started.get(withdrawal_id, [])
        before = [on for at, on in history if at <= since]
        return bool(before and before[-1]) or any(on for at, on in history if at > since)

    def listen(
        self, table: str, key: Any, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        writes = self.connect.writes()
        if table == self.prefix + "accounts" and new and new.get("payoutAccountId"):
            self.linked_at.setdefault(new["id"], writes)
        if table != self.prefix + "withdrawals" or new is None or new["id"].startswith("daily#"):
            return
        wid, before = new["id"], old or {}
        self.started.setdefault(wid, []).append((writes, bool(new.get("payoutStartedAt"))))
        transfers = [t for t in self.connect.transfers.values() if t.withdrawal_id == wid]
        if len(transfers) > 1:
            self.violations.append(f"withdrawal {wid} transferred {len(transfers)} times")
        if new["status"] == "REJECTED" and transfers:
            self.violations.append(f"withdrawal {wid} REJECTED while {transfers[0].id} exists")
        if new["status"] == "PAID" and new.get("payoutReference"):
            transfer = self.connect.transfers.get(new["payoutReference"])
            if transfer is None or (transfer.amount, transfer.currency, transfer.destination) != (
                new["amount"],
                new["currency"],
                new.get("payoutAccount"),
            ):
                self.violations.append(f"withdrawal {wid} PAID by {transfer}, which differs")
            elif new.get("returnedDiamonds", 0) > returned_for(new, transfer.reversed):
                self.violations.append(f"withdrawal {wid} returned more than was reversed")
            if before.get("status") != "PAID":
                self.reached["paid by transfer"] += 1
        gave = new.get("returnedDiamonds", 0) - before.get("returnedDiamonds", 0)
        if gave:
            self.reached["returned"] += 1
            if self.totals is not None and new["status"] in ("PENDING", "PAID"):
                self.totals.sums["withdrawn_diamonds"] -= gave
        if new.get("payoutRefusal") and new.get("payoutRefusal") != before.get("payoutRefusal"):
            self.reached["refused"] += 1

    def final(self, store: Any) -> list[str]:
        """Once everything settled: every transfer pays a withdrawal PAID by it, whose
        returned diamonds are what its reversals imply; no transfer asked for and left."""
        found = list(self.violations)
        for transfer in self.connect.transfers.values():
            item = _item(store, self.prefix + "withdrawals", transfer.withdrawal_id or "")
            if (
                item is None
                or item["status"] != "PAID"
                or item.get("payoutReference") != transfer.id
            ):
                found.append(f"transfer {transfer.id} of {transfer.withdrawal_id}: {item}")
            elif item.get("returnedDiamonds", 0) != returned_for(item, transfer.reversed):
                found.append(
                    f"withdrawal {item['id']}: {item.get('returnedDiamonds', 0)} returned for "
                    f"{transfer.reversed} reversed"
                )
        for item in _items(store, self.prefix + "withdrawals"):
            if item.get("status") == "PENDING" and item.get("payoutStartedAt"):
                found.append(f"withdrawal {item['id']}: a transfer asked for and never settled")
        return found


def _item(store: Any, table: str, item_id: str) -> dict[str, Any] | None:
    """The item as last committed (never a lagging replica's view)."""
    if hasattr(store, "committed_item"):
        found = store.committed_item(table, to_item({"id": item_id}))
    else:
        found = store.get_item(TableName=table, Key=to_item({"id": item_id}), ConsistentRead=True)
        found = found.get("Item")
    return from_item(found) if found else None


def _items(store: Any, table: str) -> list[dict[str, Any]]:
    """Every item of a table, once nothing is in flight."""
    if hasattr(store, "items"):
        return list(store.items(table))
    pages = store.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [from_item(i) for page in pages for i in page["Items"]]


async def final_audit(settings: Settings, store: Any, connect: SimConnect) -> list[str]:
    """`livecoins audit` of the run's withdrawals against the processor's transfers."""
    from resolvers.audit import audit

    dynamo = Dynamo(settings, client=store)

    async def direct(operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = getattr(store, operation)(**kwargs)
        return result

    dynamo.invoke = direct

    class Listed:  # the processor, read as the audit reads it
        name = "sim"

        async def transfers_between(self, since: float, until: float) -> list[Transfer]:
            return await connect.transfers_between(since, until)

        async def transfer_state(self, transfer_id: str) -> Transfer:
            return connect.transfer_state(transfer_id)

    services = Services(settings, dynamo, payments=None)
    services.payouts = Listed()  # type: ignore[assignment]
    report = await audit(services, 0, 2**40, segments=1, processor=False, transfers=True)
    return [f"audit: {f.kind} {f.reference}: {f.detail}" for f in report.findings]


# --- the plug-ins ---------------------------------------------------------------------------
class PayoutsWorld:
    """World mixin: the processor's Connect side, and each container's client of it."""

    connect: SimConnect

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connect = SimConnect()

    def container(self) -> Any:
        container = super().container()  # type: ignore[misc]
        if not isinstance(container.services.payouts, ConnectClient):
            container.services.payouts = ConnectClient(container)
        return container


class PayoutsWorkload:
    """Workload mixin: creators onboard, the Connect processor acts and notifies, and answers
    about payouts are justified from the store and the processor."""

    world: Any
    rng: random.Random
    queue: list[tuple[str, dict[str, str], str]]
    delivered: list[tuple[str, dict[str, str], str]]
    undelivered: list[tuple[str, dict[str, str], str]]
    violations: list[str]
    outcomes: Counter[str]
    log: Any
    after_each: bool
    totals: Any
    prefix: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from tests.sim import workload

        workload.DOCS.setdefault("startPayoutOnboarding", ONBOARD)
        self.connect: SimConnect = self.world.connect
        self.connect.writes = lambda: self._writes  # type: ignore[attr-defined]
        self.checks = PayoutChecks(self.connect, self.prefix, self.totals)
        self.world.store.listeners.append(self.checks.listen)
        self.sent_at: dict[int, int] = {}

    # choosing what to do
    def _new(self, user: dict[str, Any]) -> Any:
        from tests.sim.workload import Attempt

        roll = self.rng.random()
        if roll < 0.05:
            value = {"returnUrl": RETURN, "refreshUrl": RETURN}
            return Attempt(user, "startPayoutOnboarding", None, value, "onboard")
        if roll < 0.15 and "cognito:groups" in user:  # an admin pays what waits for review
            waiting = [
                w
                for w in self.withdrawals[-20:]  # type: ignore[attr-defined]
                if (self.item("withdrawals", {"id": w}) or {}).get("status") == "PENDING"  # type: ignore[attr-defined]
            ]
            if waiting:
                value = {"withdrawalId": self.rng.choice(waiting), "outcome": "PAID"}
                return Attempt(user, "settleWithdrawal", None, value, "pay")
        return super()._new(user)  # type: ignore[misc]

    async def run(self, attempt: Any) -> None:
        now = self._writes  # type: ignore[attr-defined]
        self.sent_at[id(attempt)] = min(now, self.sent_at.get(id(attempt), now))
        await super().run(attempt)  # type: ignore[misc]

    # the processor's acts
    def _act(self, rng: random.Random, provider: Any) -> None:
        if rng.random() < 0.4:
            self.connect_act(rng)
        else:
            super()._act(rng, provider)  # type: ignore[misc]

    def connect_act(self, rng: random.Random) -> None:
        connect = self.connect
        for transfer in list(connect.transfers):  # every new transfer is announced
            if transfer not in connect.announced:
                connect.announced.add(transfer)
                self._queue_connect("v1.transfer.created", transfer)
        accounts = list(connect.accounts.values())
        for account in accounts:  # onboardings complete (stalled ones recover), some stall
            if account.transfers != "active" and rng.random() < 0.5:
                if rng.random() < 0.85:
                    connect.complete(account.id)
                else:
                    connect.stall(account.id)
                self._queue_connect("v2.core.account[requirements].updated", account.id)
        roll = rng.random()
        if roll < 0.2 and accounts:
            enabled = [a for a in accounts if a.transfers == "active"]
            if enabled:  # Stripe asks for a document again: onboarding stalls
                account = rng.choice(enabled)
                connect.stall(account.id)
                self._queue_connect("v2.core.account[requirements].updated", account.id)
        elif roll < 0.35 and accounts:
            enabled = [a for a in accounts if a.transfers == "active"]
            if enabled:  # payouts disabled mid-review
                account = rng.choice(enabled)
                code = "requirements_past_due" if rng.random() < 0.8 else "rejected_other"
                connect.restrict(account.id, code)
                self._queue_connect("v2.core.account.updated", account.id)
        elif roll < 0.85 and connect.transfers:
            transfer = rng.choice(list(connect.transfers.values())[-20:])
            if transfer.reversed < transfer.amount:  # part or all of a transfer reversed
                amount = rng.choice([1, transfer.amount // 4, transfer.amount, 10**9])
                connect.reverse(transfer.id, max(1, amount))
                self._queue_connect("v1.transfer.reversed", transfer.id)
        elif roll < 0.95 and self.delivered:
            self.queue.append(rng.choice(self.delivered))  # a duplicate, later
        else:
            _, _, payload = self._connect_delivery("v1.transfer.reversed", "tr_sim1")
            self.queue.append((CONNECT_PATH, {"Stripe-Signature": "0" * 64}, payload))  # forged

    def _connect_delivery(self, kind: str, object_id: str) -> tuple[str, dict[str, str], str]:
        payload, signature = self.connect.delivery(kind, object_id)
        return (CONNECT_PATH, {"Stripe-Signature": signature}, payload)

    def _queue_connect(self, kind: str, object_id: str) -> None:
        delivery = self._connect_delivery(kind, object_id)
        self.queue.append(delivery)
        if self.rng.random() < 0.25:  # the same event, delivered twice at once
            self.queue.append(delivery)

    def _forged(self, delivery: tuple[str, dict[str, str], str]) -> bool:
        path, headers, _ = delivery
        if path == CONNECT_PATH:
            return headers.get("Stripe-Signature") == "0" * 64
        return super()._forged(delivery)  # type: ignore[misc,no-any-return]

    async def deliver(self, delivery: tuple[str, dict[str, str], str]) -> None:
        await super().deliver(delivery)  # type: ignore[misc]
        if delivery[0] == CONNECT_PATH and delivery in self.delivered:
            self.outcomes["connect webhook 200"] += 1

    async def redeliver(self) -> None:
        # every transfer is announced, so a settlement that died after it is finished
        for transfer in self.connect.transfers:
            if transfer not in self.connect.announced:
                self.connect.announced.add(transfer)
                self.undelivered.append(self._connect_delivery("v1.transfer.created", transfer))
        await super().redeliver()  # type: ignore[misc]
        # once everything settled: the transfers against the withdrawals, and the audit
        store = self.world.store
        self.violations.extend(self.checks.final(store))
        self.violations.extend(await final_audit(self.world.settings, store, self.connect))

    # justifying answers
    def _justify(
        self, attempt: Any, typename: str, payload: dict[str, Any], found_id: str | None
    ) -> str | None:
        problem = self.justify_payouts(attempt, typename, payload)
        if problem is not None:
            return problem or None
        return super()._justify(attempt, typename, payload, found_id)  # type: ignore[misc,no-any-return]

    def justify_payouts(self, attempt: Any, typename: str, payload: dict[str, Any]) -> str | None:
        """ "" when the answer is justified, a problem when it is not, None when it is not
        about payouts."""
        me, value = attempt.user["sub"], attempt.input
        since = self.sent_at.get(id(attempt), 0)
        if attempt.mutation == "requestWithdrawal" and attempt.key is not None:
            since = min(since, self.first_tried.get((me, attempt.mutation, attempt.key), since))  # type: ignore[attr-defined]
        if typename == "PayoutOnboardingStarted":
            account = self.item("accounts", {"id": me}) or {}  # type: ignore[attr-defined]
            return "" if account.get("payoutAccountId") in self.connect.accounts else "not linked"
        if typename == "PayoutAccountRequired":
            connected = self._connected(me)
            linked = self.checks.linked_at.get(me)
            if connected is None or linked is None or linked > since:
                return ""  # no payout account linked when it was asked
            return "" if self.connect.disabled_since(connected, since) else "payouts were enabled"
        if typename == "PayoutRefused":
            stored = self.item("withdrawals", {"id": value["withdrawalId"]}) or {}  # type: ignore[attr-defined]
            destination = stored.get("payoutAccount") or self._connected(
                stored.get("accountId", "")
            )
            refused = any(key.split(":")[0] == stored.get("id") for key in self.connect.refused)
            if refused or self.connect.disabled_since(destination, since):
                return ""
            return "the processor would have paid"
        if typename == "InvalidState" and attempt.mutation == "settleWithdrawal":
            stored = self.item("withdrawals", {"id": value["withdrawalId"]}) or {}  # type: ignore[attr-defined]
            if (
                value["outcome"] == "REJECTED"
                and stored.get("status") == "PENDING"
                and self.checks.started_since(stored["id"], since)
            ):
                return ""  # a transfer of it was asked for meanwhile
            return None  # the workload's own rule
        return None

    def _connected(self, account_id: str) -> str | None:
        key = f"payout-account:{account_id}"
        return self.connect.by_key.get(key)

    def onboarded(self) -> int:
        return sum(1 for a in self.connect.accounts.values() if a.transfers == "active")


__all__ = [
    "ConnectClient",
    "PayoutChecks",
    "PayoutsWorkload",
    "PayoutsWorld",
    "SimConnect",
    "final_audit",
    "payout_settings",
    "transfer_key",
]
