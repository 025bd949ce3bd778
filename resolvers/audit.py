"""The audit (`livecoins audit`): proves every coin and diamond, on the local engine and on AWS.

Reads every money table whole (parallel Scan segments, paged: an offline job, never a request
path), and the payment processor's charges, refunds and disputes of a time window, then checks:

- the ledger promise per account: entries sum to the wallet's coins (+ held) and diamonds
  (+ earnings shards); nothing negative;
- coins: credited - taken back from wallets - spent on gifts and entries = Σ wallets (+ held);
- diamonds: earned by gifts and entries - reversed from pending buckets - repaid (CLAWBACK) -
  withdrawn (PENDING, PAID) = Σ wallets and earnings;
- per purchase: taken back = from the wallet + found spent, within its coins; covered = its
  reversal records; held coins = what the buyer's wallet holds for refunds; no refund stuck
  REFUNDING; restriction exactly where spent coins were taken back (or an admin cleared it);
- per gift and event entry: coins reversed = its purchases' reversal records, within its coins;
- per creator: owed diamonds = records' owed - repaid;
- against the processor, every charge created, refunded or disputed in the window: amount,
  currency, status, refunds, disputes; a purchase that took back what the charge's state
  implies (`money_back.Truth`), with its status; charges never credited, purchases with no
  charge;
- store purchases (App Store, Google Play), from the tables alone: each credited as its store
  transaction's binding says, and each credited binding by exactly one purchase;
- against the stores, the store purchases the window touched: made in it, or named by the
  stores' refund records of it (Apple's REFUND / REFUND_REVERSED notification history per
  environment, Google's voided purchases), at most `store_reads` of them (the newest; the rest
  are counted as not compared): each read from its store as it is now (Apple's transaction,
  Google's purchase) for its product, quantity, price where the store says it, and the money
  back it implies (`store_purchases.truth`) against what the purchase took back; a Google one
  a day old and not consumed; one the store does not know.
- per withdrawal: its WITHDRAWAL entry, and WITHDRAWAL_RETURNED entries that give back all of
  it when REJECTED, what was returned for a reversed transfer when PAID, nothing when PENDING;
- against the payouts processor (Stripe Connect), every transfer created in the window and
  every withdrawal PAID in it: each PAID withdrawal's transfer (`payoutReference`) for its
  amount, currency and destination (the creator's connected account), the diamonds returned
  for what was reversed of it; each transfer to a withdrawal PAID by it, one transfer a
  withdrawal.
Then the platform's loss: diamonds owed and not repaid, spent coins nothing was left to reverse.
Each difference is a `Finding`; the command exits 1 on any.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.dynamo import Item
from infra.earnings import shard_total
from infra.ids import epoch
from infra.services import Services
from infra.stores import APP_STORE, PLAY_STORE, PURCHASED, ReceiptInvalid
from resolvers.errors import TryAgain
from resolvers.money_back import Truth

MONEY_TABLES = ("accounts", "ledger", "earnings", "purchases", "transfers", "events", "withdrawals")
MARK = "audit#processor"  # purchases item: where the last clean audit of the processor ended
STORES_MARK = "audit#stores"  # and of the stores
STORE_READS = 1000  # the most store purchases one audit reads from the stores


@dataclass(frozen=True)
class Finding:
    kind: str
    reference: str
    detail: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    open: list[str] = field(default_factory=list)  # convergences not settled (in progress)
    lost_diamonds: int = 0  # owed by creators, not repaid
    lost_coins: int = 0  # spent coins whose creators' diamonds could not be reversed
    counts: Counter[str] = field(default_factory=Counter)
    window: tuple[int, int] | None = None  # the processor's
    store_window: tuple[int, int] | None = None

    def add(self, kind: str, reference: str, detail: str) -> None:
        self.findings.append(Finding(kind, reference, detail))


async def audit(
    services: Services,
    since: int | None = None,
    until: int | None = None,
    segments: int = 4,
    processor: bool = True,
    store_reads: int = STORE_READS,
    stores: bool = True,
    transfers: bool | None = None,
) -> Report:
    """Audit the tables, the processor and the stores over [since, until) (epoch seconds; by
    default from the last clean audit to now): the processor's charges (`processor`) and
    transfers (`transfers`, by default as `processor`), the stores' purchases (`stores`). A
    clean audit moves its mark forward."""
    report = Report()
    tables = dict(
        zip(
            MONEY_TABLES,
            await asyncio.gather(*(services.dynamo.scan(t, segments) for t in MONEY_TABLES)),
            strict=True,
        )
    )
    report.counts.update({t: len(items) for t, items in tables.items()})
    _tables(report, tables)
    _withdrawals(report, tables)
    charges = processor and hasattr(services.payments, "charges_between")
    paid = (processor if transfers is None else transfers) and hasattr(
        services.payouts, "transfers_between"
    )
    if charges or paid:
        mark = await services.dynamo.get("purchases", {"id": MARK}, consistent=True)
        start = since if since is not None else int((mark or {}).get("until", 0))
        end = until if until is not None else epoch()
        report.window = (start, end)
        if charges:
            purchases = {
                p["chargeId"]: p
                for p in tables["purchases"]
                if p["id"].startswith("pur_") and not p.get("store")
            }
            await _processor(services, report, purchases, start, end)
        if paid:
            await _transfers(services, report, tables["withdrawals"], start, end)
        if not report.findings and until is None:
            await services.dynamo.put("purchases", {"id": MARK, "until": end})
    _store_tables(report, tables["purchases"])
    sold = [store for store in (services.app_store, services.play_store) if store is not None]
    if stores and sold:
        mark = await services.dynamo.get("purchases", {"id": STORES_MARK}, consistent=True)
        start = since if since is not None else int((mark or {}).get("until", 0))
        end = until if until is not None else epoch()
        report.store_window = (start, end)
        findings = len(report.findings)
        await _stores(services, report, tables["purchases"], start, end, store_reads)
        if len(report.findings) == findings and until is None:
            await services.dynamo.put("purchases", {"id": STORES_MARK, "until": end})
    return report


def _withdrawals(report: Report, tables: dict[str, list[Item]]) -> None:
    """Each withdrawal against its ledger entries and its returns."""
    from resolvers.payouts import returned_for

    taken: Counter[str] = Counter()
    returned: Counter[str] = Counter()
    for entry in tables["ledger"]:
        if entry["kind"] == "WITHDRAWAL":
            taken[entry["referenceId"]] -= entry["diamonds"]
        elif entry["kind"] == "WITHDRAWAL_RETURNED":
            returned[entry["referenceId"]] += entry["diamonds"]
    for w in tables["withdrawals"]:
        if w["id"].startswith("daily#"):
            continue
        wid, given = w["id"], w.get("returnedDiamonds", 0)
        expected = {"REJECTED": w["diamonds"], "PAID": given}.get(w["status"], 0)
        if taken[wid] != w["diamonds"] or returned[wid] != expected:
            report.add(
                "withdrawal entries differ",
                wid,
                f"{w['status']} of {w['diamonds']} diamonds: entries took {taken[wid]}, gave "
                f"back {returned[wid]}, expected {expected}",
            )
        if given and (
            w["status"] != "PAID"
            or not 0 < given <= w["diamonds"]
            or given != returned_for(w, w.get("reversedAmount", 0))
        ):
            report.add(
                "returned differs",
                wid,
                f"{given} diamonds returned for {w.get('reversedAmount', 0)} cents reversed",
            )


async def _transfers(
    services: Services, report: Report, withdrawals: list[Item], since: int, until: int
) -> None:
    """Every transfer of the window, and every withdrawal PAID in it, against each other."""
    from resolvers.payouts import returned_for

    provider: Any = services.payouts
    listed = {t.id: t for t in await provider.transfers_between(since, until)}
    by_id = {w["id"]: w for w in withdrawals if not w["id"].startswith("daily#")}
    per_withdrawal: Counter[str] = Counter()
    for transfer in listed.values():
        per_withdrawal[transfer.withdrawal_id or ""] += 1
        withdrawal = by_id.get(transfer.withdrawal_id or "")
        if withdrawal is None:
            report.add(
                "transfer of no withdrawal", transfer.id, f"{transfer.amount} {transfer.currency}"
            )
        elif withdrawal["status"] != "PAID" or withdrawal.get("payoutReference") != transfer.id:
            report.add(
                "transferred, not paid",
                withdrawal["id"],
                f"{transfer.id} exists; the withdrawal is {withdrawal['status']} "
                f"(payoutReference {withdrawal.get('payoutReference')})",
            )
    for wid, count in per_withdrawal.items():
        if wid and count > 1:
            report.add("paid twice", wid, f"{count} transfers")
    # PAID by a transfer of the window, or PAID in the window where a processor pays
    paid = [
        w
        for w in by_id.values()
        if w["status"] == "PAID"
        and (
            w.get("payoutReference") in listed
            or (w.get("payoutAccount") and since <= _epoch(w.get("settledAt", "")) < until)
        )
    ]
    report.counts["transfers"] = len(listed)
    for withdrawal in paid:
        wid, reference = withdrawal["id"], withdrawal.get("payoutReference")
        if not reference:
            report.add("paid without a transfer", wid, "PAID while a payouts processor pays")
            continue
        transfer = listed.get(reference)
        if transfer is None:
            try:
                transfer = await provider.transfer_state(reference)
            except LookupError:
                report.add("paid, no transfer", wid, f"transfer {reference} not found")
                continue
        expected = (withdrawal["amount"], withdrawal["currency"], withdrawal.get("payoutAccount"))
        actual = (transfer.amount, transfer.currency, transfer.destination)
        if expected != actual or transfer.withdrawal_id != wid:
            report.add(
                "transfer differs",
                wid,
                f"transfer {transfer.id}: {actual} for {transfer.withdrawal_id}; "
                f"the withdrawal: {expected}",
            )
        due = returned_for(withdrawal, transfer.reversed)
        if withdrawal.get("returnedDiamonds", 0) != due:
            report.add(
                "reversal not returned",
                wid,
                f"{transfer.reversed} cents reversed: {due} diamonds due back, "
                f"{withdrawal.get('returnedDiamonds', 0)} returned",
            )


def _tables(report: Report, tables: dict[str, list[Item]]) -> None:
    accounts = {a["id"]: a for a in tables["accounts"]}
    ledger_coins: Counter[str] = Counter()
    ledger_diamonds: Counter[str] = Counter()
    clawback: Counter[str] = Counter()
    for entry in tables["ledger"]:
        owner = entry["accountId"].split("#")[0]
        ledger_coins[owner] += entry["coins"]
        ledger_diamonds[owner] += entry["diamonds"]
        if entry["kind"] == "CLAWBACK":
            clawback[owner] += entry["diamonds"]
    earned: Counter[str] = Counter()
    for shard in tables["earnings"]:
        earned[shard["accountId"]] += shard_total(shard)
        if any(isinstance(v, int) and v < 0 for v in shard.values()):
            report.add("negative balance", shard["id"], str(shard))
    # the ledger promise
    for owner in set(accounts) | set(ledger_coins) | set(earned):
        account = accounts.get(owner, {})
        coins = account.get("coins", 0) + account.get("heldCoins", 0)
        diamonds = account.get("diamonds", 0) + earned[owner]
        if (coins, diamonds) != (ledger_coins[owner], ledger_diamonds[owner]):
            report.add(
                "ledger differs",
                owner,
                f"wallet {coins} coins {diamonds} diamonds; entries {ledger_coins[owner]} coins "
                f"{ledger_diamonds[owner]} diamonds",
            )
        for name in ("coins", "heldCoins", "diamonds", "owedDiamonds"):
            if account.get(name, 0) < 0:
                report.add("negative balance", owner, f"{name} = {account[name]}")
    # purchases, reversal records, gifts and entries
    purchases = {p["id"]: p for p in tables["purchases"] if p["id"].startswith("pur_")}
    records = [r for r in tables["purchases"] if r["id"].startswith("rev#")]
    covered: Counter[str] = Counter()
    by_ref: Counter[str] = Counter()
    owed: Counter[str] = Counter()
    for record in records:
        covered[record["purchaseId"]] += record["coins"]
        by_ref[record["refId"]] += record["coins"]
        owed[record["creatorId"]] += record.get("owed", 0)
        paid = record["unitDiamonds"] * record["coins"] // record["unitCoins"]
        if record["diamonds"] != paid or not 0 <= record.get("owed", 0) <= record["diamonds"]:
            report.add("reversal differs", record["id"], str(record))
    held: Counter[str] = Counter()
    restricted_by: dict[str, set[str]] = defaultdict(set)
    for purchase in purchases.values():
        pid, buyer = purchase["id"], purchase["accountId"]
        taken, wallet, spent = (purchase.get(k, 0) for k in ("takenBack", "fromWallet", "spent"))
        if taken != wallet + spent or not 0 <= taken <= purchase["coins"]:
            report.add("taken back differs", pid, f"{taken} != {wallet} + {spent}")
        if covered[pid] != purchase.get("covered", 0):
            report.add(
                "reversals differ",
                pid,
                f"covered {purchase.get('covered', 0)}, records {covered[pid]}",
            )
        if purchase["status"] == "REFUNDING":
            report.add("refund stuck", pid, f"REFUNDING, {purchase.get('held', 0)} coins held")
        held[buyer] += purchase.get("held", 0)
        if purchase.get("gen", 0) != purchase.get("settled", 0):
            report.open.append(pid)
        if spent > 0:
            restricted_by[buyer].add(pid)
            if purchase.get("walkDone") and purchase.get("covered", 0) < spent:
                report.lost_coins += spent - purchase.get("covered", 0)
                left = _reversible(purchase, tables)
                if left:
                    report.add(
                        "loss while reversible",
                        pid,
                        f"spent coins counted as lost while {sorted(left)[:5]} could pay back",
                    )
    for owner, account in accounts.items():
        if account.get("heldCoins", 0) != held[owner]:
            report.add(
                "coins left held",
                owner,
                f"{account.get('heldCoins', 0)} held, refunds in progress hold {held[owner]}",
            )
        holding = set(account.get("restrictedBy") or ())
        for pid in holding - restricted_by[owner]:
            report.add("restricted for nothing", owner, f"by {pid}, whose coins were not spent")
        missing = restricted_by[owner] - holding
        if missing and not account.get("restrictionClearedAt"):
            report.add("not restricted", owner, f"spent coins taken back by {sorted(missing)}")
        if account.get("owedDiamonds", 0) != owed[owner] + clawback[owner]:
            report.add(
                "owed differs",
                owner,
                f"owes {account.get('owedDiamonds', 0)}; records {owed[owner]}, repaid "
                f"{-clawback[owner]}",
            )
        report.lost_diamonds += max(0, account.get("owedDiamonds", 0))
    paid_for = [t for t in tables["transfers"]] + [
        m for m in tables["events"] if "accountId" in m and "#" in m["id"]
    ]
    for item in paid_for:
        reversed_ = item.get("reversedCoins", 0)
        if reversed_ != by_ref[item["id"]] or not 0 <= reversed_ <= item.get("coins", 0):
            report.add(
                "reversal differs",
                item["id"],
                f"{reversed_} coins reversed, records {by_ref[item['id']]}",
            )
    # conservation
    entry_coins = {e["id"]: e.get("entryCoins", 0) for e in tables["events"] if "#" not in e["id"]}
    memberships = [m for m in tables["events"] if "accountId" in m and "#" in m["id"]]
    entries = sum(m.get("coins") or entry_coins.get(m["id"].split("#")[0], 0) for m in memberships)
    wallets = sum(a.get("coins", 0) + a.get("heldCoins", 0) for a in accounts.values())
    bought = sum(p["coins"] for p in purchases.values())
    taken_back = sum(p.get("fromWallet", 0) for p in purchases.values())
    gifted = sum(t["coins"] for t in tables["transfers"])
    if wallets != bought - taken_back - gifted - entries:
        report.add(
            "coins differ",
            "all",
            f"wallets {wallets} != credited {bought} - taken back {taken_back} - gifted {gifted} "
            f"- entries {entries}",
        )
    diamonds = sum(a.get("diamonds", 0) for a in accounts.values()) + sum(earned.values())
    earned_total = sum(t["diamonds"] for t in tables["transfers"]) + entries
    from_buckets = sum(r["diamonds"] - r.get("owed", 0) for r in records)
    repaid = -sum(clawback.values())
    withdrawn = sum(
        w["diamonds"] - w.get("returnedDiamonds", 0)
        for w in tables["withdrawals"]
        if not w["id"].startswith("daily#") and w["status"] in ("PENDING", "PAID")
    )
    if diamonds != earned_total - from_buckets - repaid - withdrawn:
        report.add(
            "diamonds differ",
            "all",
            f"wallets {diamonds} != earned {earned_total} - reversed {from_buckets} - repaid "
            f"{repaid} - withdrawn {withdrawn}",
        )


def _reversible(purchase: Item, tables: dict[str, list[Item]]) -> list[str]:
    """The buyer's gifts and entries between the purchase and when its coins were found spent
    that are not wholly reversed."""
    buyer = purchase["accountId"]
    since = str(purchase.get("entryId") or "_").split("_", 1)[1]
    until = str(purchase.get("walkFrom") or "_").split("_", 1)[1]
    return [
        t["id"]
        for t in tables["transfers"]
        if t.get("senderId") == buyer
        and since < t["id"].split("_", 1)[1] < until
        and t.get("reversedCoins", 0) < t["coins"]
    ]


async def _processor(
    services: Services, report: Report, purchases: dict[str, Item], since: int, until: int
) -> None:
    provider: Any = services.payments
    charges, refunds, disputes = await asyncio.gather(
        provider.charges_between(since, until),
        provider.refunds_between(since, until),
        provider.disputes_between(since, until),
    )
    touched = {c["id"] for c in charges}
    touched |= {r["charge"] for r in refunds} | {d["charge"] for d in disputes}
    # purchases made in the window: their charges, however late they were created
    touched |= {
        charge_id
        for charge_id, p in purchases.items()
        if since <= _epoch(p.get("createdAt", "")) < until
    }
    report.counts["charges"] = len(touched)
    states = await asyncio.gather(*(_charge(provider, c) for c in sorted(touched)))
    for charge_id, state in zip(sorted(touched), states, strict=True):
        purchase = purchases.get(charge_id)
        if state is None:
            if purchase is not None:
                report.add("credited, no charge", purchase["id"], f"charge {charge_id} not found")
            continue
        truth = Truth(state.amount, state.refunded, state.disputed)
        if purchase is None:
            if state.status == "succeeded" and truth.money_back < state.amount:
                report.add(
                    "charged, never credited",
                    state.id,
                    f"{state.amount} {state.currency}, {truth.money_back} returned",
                )
            continue
        pid = purchase["id"]
        if (state.amount, state.currency) != (purchase["priceAmount"], purchase["currency"]):
            report.add(
                "amount differs",
                pid,
                f"charged {state.amount} {state.currency}, purchase says "
                f"{purchase['priceAmount']} {purchase['currency']}",
            )
        if state.status != "succeeded":
            report.add("charge not succeeded", pid, f"{state.id} is {state.status}")
        expected = truth.coins(purchase)
        if purchase.get("takenBack", 0) != expected or purchase.get("refunded", 0) != (
            truth.money_back
        ):
            report.add(
                "money back differs",
                pid,
                f"the processor returned {truth.money_back} (refunds {truth.refunded}, disputes "
                f"{truth.disputed}): {expected} coins; the purchase took back "
                f"{purchase.get('takenBack', 0)} for {purchase.get('refunded', 0)}",
            )
        status = "REFUNDED" if truth.money_back >= state.amount else "COMPLETED"
        if purchase["status"] not in (status, "REFUNDING"):
            report.add("status differs", pid, f"{purchase['status']}, the processor says {status}")


async def _charge(provider: Any, charge_id: str) -> Any:
    try:
        return await provider.charge(charge_id)
    except LookupError:
        return None


def _epoch(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


# --- the mobile stores -------------------------------------------------------------------------


def _store_tables(report: Report, items: list[Item]) -> None:
    """Store purchases against their bindings, from the tables alone."""
    bindings = {b["id"]: b for b in items if b["id"].startswith("store#")}
    credited: Counter[str] = Counter()
    for purchase in items:
        if not purchase["id"].startswith("pur_") or not purchase.get("store"):
            continue
        binding_id = f"store#{purchase['chargeId']}"
        credited[binding_id] += 1
        binding = bindings.get(binding_id, {})
        if binding.get("status") != "CREDITED" or binding.get("purchaseId") != purchase["id"]:
            report.add(
                "store purchase unbound",
                purchase["id"],
                f"{binding_id} is {binding.get('status')} as {binding.get('purchaseId')}",
            )
        elif (binding["accountId"], binding["coins"]) != (purchase["accountId"], purchase["coins"]):
            report.add(
                "store purchase differs",
                purchase["id"],
                f"credited {purchase['coins']} coins to {purchase['accountId']}; bound "
                f"{binding['coins']} to {binding['accountId']}",
            )
    for binding_id, binding in bindings.items():
        if binding.get("status") == "CREDITED" and credited[binding_id] != 1:
            report.add(
                "store transaction credited",
                binding_id,
                f"{credited[binding_id]} purchases credit it",
            )


async def _stores(
    services: Services, report: Report, items: list[Item], since: int, until: int, reads: int
) -> None:
    purchases = {p["chargeId"]: p for p in items if p["id"].startswith("pur_") and p.get("store")}
    touched = {
        charge for charge, p in purchases.items() if since <= _epoch(p.get("createdAt", "")) < until
    }
    start, end = (datetime.fromtimestamp(t, UTC) for t in (since, min(until, epoch())))
    try:
        touched |= await _refunded(services, start, end)
    except TryAgain as error:
        report.add("store not read", "stores", f"the stores' refunds of the window: {error}")
    compared = sorted(
        (purchases[c] for c in touched if c in purchases),
        key=lambda p: p.get("createdAt", ""),
        reverse=True,
    )
    report.counts["store purchases compared"] = min(len(compared), reads)
    report.counts["store purchases not compared"] = max(0, len(compared) - reads)
    for start_at in range(0, min(len(compared), reads), 10):  # 10 store reads at a time
        chunk = compared[start_at : min(start_at + 10, reads)]
        await asyncio.gather(*(_store_purchase(services, report, p) for p in chunk))


async def _refunded(services: Services, start: datetime, end: datetime) -> set[str]:
    """The store purchases (their `chargeId`) the stores' refund records of a window name."""
    from resolvers.store_purchases import ask_store, charge_id

    named: set[str] = set()
    app, play = services.app_store, services.play_store
    if app is not None:
        since = max(start, end - timedelta(days=179))
        for environment in app.environments if since < end else ():
            for kind in ("REFUND", "REFUND_REVERSED"):
                token: str | None = None
                while True:
                    page = await ask_store(
                        services,
                        lambda: app.notification_history(
                            since,
                            end,
                            environment=environment,  # noqa: B023 - called at once
                            notification_type=kind,  # noqa: B023
                            pagination_token=token,  # noqa: B023
                        ),
                    )
                    named |= {
                        charge_id(
                            APP_STORE, n.transaction.environment, n.transaction.transaction_id
                        )
                        for n in page.notifications
                        if n.transaction is not None
                    }
                    if not page.has_more or not page.pagination_token:
                        break
                    token = page.pagination_token
    if play is not None:
        since = max(start, end - timedelta(days=29))
        if since < end:
            voided = await ask_store(services, lambda: play.voided_purchases(since, end))
            named |= {f"{PLAY_STORE}#{v.transaction_id}" for v in voided}
    return named


async def _store_purchase(services: Services, report: Report, purchase: Item) -> None:
    from resolvers import store_purchases

    pid = purchase["id"]
    try:
        found = await store_purchases.store_now(services, purchase)
    except ReceiptInvalid as error:
        report.add("credited, no store purchase", pid, f"{purchase['chargeId']}: {error.reason}")
        return
    except TryAgain as error:
        report.add("store not read", pid, str(error))
        return
    if (found.product_id, found.quantity) != (purchase["productId"], purchase["quantity"]):
        report.add(
            "store purchase differs",
            pid,
            f"the store says {found.quantity} x {found.product_id}, the purchase "
            f"{purchase['quantity']} x {purchase['productId']}",
        )
    if purchase.get("priceSource") == "store" and (found.price, found.currency) != (
        purchase["priceAmount"],
        purchase["currency"],
    ):
        report.add(
            "amount differs",
            pid,
            f"the store says {found.price} {found.currency}, the purchase "
            f"{purchase['priceAmount']} {purchase['currency']}",
        )
    truth = store_purchases.truth(purchase, found)
    expected = truth.coins(purchase)
    if purchase.get("takenBack", 0) != expected or purchase.get("refunded", 0) != truth.money_back:
        report.add(
            "money back differs",
            pid,
            f"the store returned {truth.money_back} ({found.state}, {found.refunded_quantity} of "
            f"{found.quantity}): {expected} coins; the purchase took back "
            f"{purchase.get('takenBack', 0)} for {purchase.get('refunded', 0)}",
        )
    status = "REFUNDED" if truth.money_back >= truth.amount > 0 else "COMPLETED"
    if purchase["status"] != status:
        report.add("status differs", pid, f"{purchase['status']}, the store says {status}")
    day_old = _epoch(purchase.get("createdAt", "")) < epoch() - 86_400
    if found.consumed is False and found.state == PURCHASED and day_old:
        report.add("not consumed", pid, "credited a day ago and Google still holds it unconsumed")
