"""Virtual clients: random operations through the GraphQL API, and the check of every answer.

Each client is one account (two are admins) that buys coins (approved and declined), goes
live and ends streams, publishes videos, sends gifts (to live and ended streams, to videos,
beyond its coins), creates and joins events, asks for withdrawals (under and over the daily
limit), settles them (PAID, REJECTED, both at once), refunds purchases (spent or not,
concurrently) and renames itself; and **retries with the same idempotency key**:
immediately, later, concurrently, after a fault and after a crash.

Every answer is checked when it arrives (the world is stopped then): no internal error; a
transient failure only as TRY_AGAIN; a success durable in the store and the same one for
every replay of its key; a user error only when the store shows its cause (like Jepsen's
checkers, an answer that never arrived may or may not have taken effect, and both are
accepted). Then the running invariants (tests/sim/checker.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.dynamo import from_item, to_item
from tests.sim.checker import Totals

WALLET = "wallet { coins diamonds }"
DOCS = {
    "purchaseCoins": """mutation B($i: PurchaseCoinsInput!) { r: purchaseCoins(input: $i) {
      __typename ... on CoinsPurchased { purchase { id coins status } wallet { coins } }
      ... on UserError { message } } }""",
    "sendGift": """mutation G($i: SendGiftInput!) { r: sendGift(input: $i) { __typename
      ... on GiftSent { transfer { id coins diamonds } wallet { coins } }
      ... on InsufficientCoins { required available } ... on UserError { message } } }""",
    "startLiveStream": """mutation S($i: StartLiveStreamInput!) { r: startLiveStream(input: $i) {
      __typename ... on LiveStreamStarted { stream { id status } } ... on UserError { message }
      } }""",
    "endLiveStream": """mutation E($i: EndLiveStreamInput!) { r: endLiveStream(input: $i) {
      __typename ... on LiveStreamEnded { stream { id status } }
      ... on UserError { message } } }""",
    "publishVideo": """mutation V($i: PublishVideoInput!) { r: publishVideo(input: $i) {
      __typename ... on VideoPublished { video { id } } ... on UserError { message } } }""",
    "createEvent": """mutation C($i: CreateEventInput!) { r: createEvent(input: $i) {
      __typename ... on EventCreated { event { id } } ... on UserError { message } } }""",
    "joinEvent": """mutation J($i: JoinEventInput!) { r: joinEvent(input: $i) { __typename
      ... on EventJoined { event { id participants } wallet { coins } }
      ... on InsufficientCoins { required available } ... on UserError { message } } }""",
    "requestWithdrawal": """mutation W($i: RequestWithdrawalInput!) {
      r: requestWithdrawal(input: $i) { __typename
      ... on WithdrawalRequested { withdrawal { id status diamonds amount { amount } } }
      ... on InsufficientDiamonds { required available }
      ... on DailyLimitExceeded { remaining { amount } } ... on UserError { message } } }""",
    "settleWithdrawal": """mutation T($i: SettleWithdrawalInput!) {
      r: settleWithdrawal(input: $i) { __typename
      ... on WithdrawalSettled { withdrawal { id status } } ... on UserError { message } } }""",
    "refundPurchase": """mutation R($i: RefundPurchaseInput!) { r: refundPurchase(input: $i) {
      __typename ... on PurchaseRefunded { purchase { id status } }
      ... on InsufficientCoins { required available } ... on UserError { message } } }""",
    "updateProfile": """mutation P($i: UpdateProfileInput!) { r: updateProfile(input: $i) {
      __typename ... on ProfileUpdated { user { id displayName } } } }""",
    "streamQuery": """query Q($id: ID!) { liveStream(id: $id) { coinsReceived status
      topGifters(first: 3) { coins user { id } } gifts(first: 3) { edges { node { id } } } } }""",
    "me": f"{{ me {{ {WALLET} earnings {{ diamonds remainingToday {{ amount }} }} }} }}",
}
# The id each success carries, to compare across replays of one key.
SUCCESS_ID = {
    "CoinsPurchased": ("purchase", "id"),
    "GiftSent": ("transfer", "id"),
    "LiveStreamStarted": ("stream", "id"),
    "LiveStreamEnded": ("stream", "id"),
    "VideoPublished": ("video", "id"),
    "EventCreated": ("event", "id"),
    "EventJoined": ("event", "id"),
    "WithdrawalRequested": ("withdrawal", "id"),
    "WithdrawalSettled": ("withdrawal", "id"),
    "PurchaseRefunded": ("purchase", "id"),
    "ProfileUpdated": ("user", "id"),
}
PACKAGES = ["coins-70", "coins-350", "coins-700", "coins-1400", "coins-3500", "coins-7000"]
GIFTS = {"rose": 1, "panda": 5, "love-bang": 25, "rainbow-puke": 100, "concert": 500}
MINIMUM_DIAMONDS = 2_000
LIMIT_CENTS = 100_000


class Pool:
    """Ids and their owners, with O(1) random picks (the run learns thousands of them)."""

    def __init__(self) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, int] = {}
        self._by_owner: dict[str, list[str]] = {}

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._index

    def add(self, item_id: str, owner: str) -> None:
        if item_id not in self._index:
            self._index[item_id] = len(self._items)
            self._items.append((item_id, owner))
            self._by_owner.setdefault(owner, []).append(item_id)

    def remove(self, item_id: str) -> str:
        position = self._index.pop(item_id)
        _, owner = self._items[position]
        last = self._items.pop()
        if position < len(self._items):
            self._items[position] = last
            self._index[last[0]] = position
        self._by_owner[owner].remove(item_id)
        return owner

    def pick(
        self, rng: random.Random, owner: str | None = None, not_owner: str | None = None
    ) -> str | None:
        """A random id: of `owner`, or of anyone but `not_owner` (None when there is none)."""
        if owner is not None:
            mine = self._by_owner.get(owner)
            return rng.choice(mine) if mine else None
        for _ in range(8):  # a few draws: the run's pools have many owners
            if not self._items:
                return None
            item_id, item_owner = self._items[rng.randrange(len(self._items))]
            if item_owner != not_owner:
                return item_id
        return None


def _conflicting(value: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    """The same mutation's input with one field changed (for an IdempotencyConflict)."""
    changed = dict(value)
    if "quantity" in changed:
        changed["quantity"] += 1
    elif "packageId" in changed:
        changed["packageId"] = rng.choice([p for p in PACKAGES if p != value["packageId"]])
    elif "title" in changed:
        changed["title"] += "!"
    elif "diamonds" in changed:
        changed["diamonds"] += 2_000
    else:
        return None
    return changed


@dataclass
class Attempt:
    user: dict[str, Any]
    mutation: str
    key: str | None
    input: dict[str, Any]
    note: str = ""

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.input, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class KeyHistory:
    digests: set[str] = field(default_factory=set)
    outcome: tuple[str, str | None] | None = None  # (typename, id) of the first definite answer
    open: Attempt | None = None  # an attempt whose answer never came or was TRY_AGAIN


class Workload:
    def __init__(
        self,
        world: Any,
        totals: Totals,
        seed: int,
        clients: int,
        operations: int,
        prefix: str,
    ) -> None:
        self.world = world
        self.totals = totals
        self.rng = random.Random(f"workload-{seed}")
        self.operations = operations
        self.prefix = prefix
        self.users = [
            {"sub": f"u{n:02d}", "birthdate": "1990-01-01", "name": f"User {n}"}
            for n in range(clients)
        ]
        for admin in self.users[:2]:
            admin["cognito:groups"] = ["admin"]
        self.minor = {"sub": "kid", "birthdate": "2015-06-01"}
        # what the clients learnt from answers: id -> its creator
        self.live, self.ended, self.videos, self.events = Pool(), Pool(), Pool(), Pool()
        self.purchases: list[tuple[str, str]] = []
        self.withdrawals: list[str] = []
        self.keys: dict[tuple[str, str, str], KeyHistory] = {}
        self.open_keyless: list[Attempt] = []
        self.recent: dict[str, deque[Attempt]] = {u["sub"]: deque(maxlen=8) for u in self.users}
        self.started = 0
        self.completed = 0
        self.violations: list[str] = []
        self.log: deque[str] = deque(maxlen=40)
        self.outcomes: Counter[str] = Counter()
        self.inputs: dict[tuple[str, str, str], Attempt] = {}
        self.after_each = True  # check the running invariants after every operation
        self.disputes_open: list[tuple[dict[str, Any], tuple[str, str] | None]] = []
        self.delivered: list[tuple[str, str]] = []
        self.undelivered: list[tuple[str, str]] = []
        self.progress: Callable[[int], None] | None = None
        self._n = 0
        # linearizability of a refusal read before its write: the write sequence number at
        # which each key was first tried, and at which each account was last freed
        self._writes = 0
        self.first_tried: dict[tuple[str, str, str], int] = {}
        self.freed: dict[str, int] = {}
        if hasattr(world.store, "listeners"):
            world.store.listeners.append(self._remembered)
            world.store.on_apply.append(self._applied)

    def _applied(self, table: str, key: Any, old: Any, new: Any) -> None:
        """When an account's restriction is lifted for readers: a transaction that lifts it
        is committed before a GetItem of the account stops seeing it (tests/sim/store.py)."""
        if table != self.prefix + "accounts" or old is None or "restrictedBy" not in old:
            return
        was, now = from_item(old), from_item(new) if new is not None else None
        if was.get("restrictedBy") and not (now and now.get("restrictedBy")):
            self._writes += 1
            self.freed[was["id"]] = self._writes

    def _remembered(self, table: str, key: Any, old: Any, new: Any) -> None:
        """Every user error remembered under a key is checked the moment it is written: a
        fault must never be remembered as one."""
        self._writes += 1
        if table != self.prefix + "idempotency" or new is None or new["status"] != "FAILED":
            return
        if old is not None and old["status"] == "FAILED":
            return
        sub, mutation, idempotency_key = new["key"].split("#", 2)
        attempt = self.inputs[(sub, mutation, idempotency_key)]
        error = dict(new["error"])
        typename = error.pop("type")
        if "remaining" in error:
            error["remaining"] = {"amount": error["remaining"]}
        problem = self._justify(attempt, typename, error, None)
        if problem:
            self._violation(attempt, f"remembered {typename}: {problem}")

    # --- the store, read by the checker (outside the system: no faults, no scheduling) ---
    def item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The item as last committed: never a lagging replica's or a half-applied view."""
        store, name = self.world.store, self.prefix + table
        if hasattr(store, "committed_item"):
            found = store.committed_item(name, to_item(key))
        else:  # the real engine
            found = store.get_item(TableName=name, Key=to_item(key), ConsistentRead=True).get(
                "Item"
            )
        return from_item(found) if found else None

    # --- choosing what to do ----------------------------------------------------------
    def new_key(self) -> str:
        self._n += 1
        return f"k{self._n}"

    def choose(self, user: dict[str, Any]) -> tuple[Attempt, int]:
        """The next attempt and how many copies to send at once."""
        rng = self.rng
        recent = self.recent[user["sub"]]
        roll = rng.random()
        if recent and roll < 0.12:  # a retry with the same key, now or later
            past = rng.choice(list(recent))
            if rng.random() < 0.1 and past.key is not None:  # same key, other input
                changed = _conflicting(past.input, rng)
                if changed is not None:
                    return Attempt(user, past.mutation, past.key, changed, "conflicting"), 1
            return past, 1
        attempt = self._new(user)
        copies = 2 if attempt.key is not None and rng.random() < 0.05 else 1
        return attempt, copies

    def _new(self, user: dict[str, Any]) -> Attempt:
        rng, me = self.rng, user["sub"]
        weights = {
            "buy": 14,
            "buy-declined": 2,
            "buy-minor": 1,
            "start": 4,
            "end": 3,
            "publish": 2,
            "gift-stream": 30,
            "gift-video": 8,
            "gift-ended": 2,
            "gift-expensive": 2,
            "create-event": 2,
            "join": 6,
            "withdraw": 6,
            "withdraw-over": 1,
            "settle": 4 if "cognito:groups" in user else 0,
            "refund": 3 if "cognito:groups" in user else 0,
            "profile": 2,
            "read": 4,
        }
        kind = rng.choices(list(weights), list(weights.values()))[0]
        key = self.new_key()
        if kind.startswith("buy"):
            token = "tok_chargeDeclined" if kind == "buy-declined" else "tok_visa"
            buyer = self.minor if kind == "buy-minor" else user
            package = rng.choice(PACKAGES)
            value = {"packageId": package, "paymentToken": token, "idempotencyKey": key}
            return Attempt(buyer, "purchaseCoins", key, value, kind)
        if kind == "start":
            keyed = rng.random() < 0.8
            value = {"title": f"Live {key}"} | ({"idempotencyKey": key} if keyed else {})
            return Attempt(user, "startLiveStream", key if keyed else None, value, kind)
        if kind == "end":
            target = self.live.pick(rng, owner=me) or self.ended.pick(rng, owner=me)
            if target is not None:
                keyed = rng.random() < 0.8
                value = {"streamId": target} | ({"idempotencyKey": key} if keyed else {})
                return Attempt(user, "endLiveStream", key if keyed else None, value, kind)
            kind = "publish"
        if kind == "publish":
            keyed = rng.random() < 0.8
            value = {"title": f"Clip {key}"} | ({"idempotencyKey": key} if keyed else {})
            return Attempt(user, "publishVideo", key if keyed else None, value, kind)
        if kind.startswith("gift"):
            field, pool = {
                "gift-video": ("videoId", self.videos),
                "gift-ended": ("streamId", self.ended),
            }.get(kind, ("streamId", self.live))
            chosen = pool.pick(rng, not_owner=me)
            if chosen is not None:
                target = {field: chosen}
                gift = "universe" if kind == "gift-expensive" else rng.choice(list(GIFTS))
                quantity = rng.choice([1, 1, 1, 2, 5])
                value = {"giftId": gift, "quantity": quantity, "idempotencyKey": key} | target
                return Attempt(user, "sendGift", key, value, kind)
            kind = "read"
        if kind == "create-event":
            keyed = rng.random() < 0.8
            value = {"title": f"Event {key}", "entryCoins": rng.choice([5, 20, 100])}
            value |= {"idempotencyKey": key} if keyed else {}
            return Attempt(user, "createEvent", key if keyed else None, value, kind)
        if kind == "join":
            event = self.events.pick(rng, not_owner=me)
            if event is not None:
                value = {"eventId": event, "idempotencyKey": key}
                return Attempt(user, "joinEvent", key, value, kind)
            kind = "read"
        if kind.startswith("withdraw"):
            diamonds = 200_002 if kind == "withdraw-over" else rng.choice([2_000, 2_000, 4_000])
            value = {"diamonds": diamonds, "idempotencyKey": key}
            return Attempt(user, "requestWithdrawal", key, value, kind)
        if kind == "settle" and self.withdrawals:
            outcome = rng.choice(["PAID", "REJECTED"])
            value = {"withdrawalId": rng.choice(self.withdrawals[-20:]), "outcome": outcome}
            return Attempt(user, "settleWithdrawal", None, value, kind)
        if kind == "refund" and self.purchases:
            value = {"purchaseId": rng.choice(self.purchases[-30:])[0]}
            return Attempt(user, "refundPurchase", None, value, kind)
        if kind == "profile":
            value = {"displayName": f"Name {rng.randrange(1000)}"}
            return Attempt(user, "updateProfile", None, value, kind)
        stream = self.live.pick(rng) if rng.random() < 0.5 else None
        if stream is not None:
            return Attempt(user, "streamQuery", None, {"id": stream}, "read")
        return Attempt(user, "me", None, {}, "read")

    # --- running and checking -------------------------------------------------------------
    async def client(self, number: int) -> None:
        user = self.users[number]
        while self.started < self.operations:
            self.started += 1
            attempt, copies = self.choose(user)
            if copies == 1:
                await self.run(attempt)
            else:
                await asyncio.gather(*(self.run(attempt) for _ in range(copies)))

    # --- the payment processor: refunds in its dashboard, disputes, webhook deliveries ---
    async def processor(self, every: int) -> None:
        """Acts at the processor about once per `every` operations, and delivers its webhooks:
        duplicated, reordered (a dispute closed before it was opened), forged."""
        rng, provider = self.rng, self.world.provider
        while self.started < self.operations:
            mark = self.started
            while self.started < min(mark + every, self.operations):
                await self.world.scheduler.sleep(0.01)  # virtual time: the clients go on
            roll = rng.random()
            credited = [c for c in provider.charges if self._credited(c)]
            fresh = [c for c in credited if c not in provider.refuse]
            if roll < 0.25 and self.disputes_open:
                dispute, opening = self.disputes_open.pop(rng.randrange(len(self.disputes_open)))
                won = rng.random() < 0.5
                closing = provider.delivery(
                    "charge.dispute.closed", {**dispute, "status": "won" if won else "lost"}
                )
                if opening is not None:  # reordered: the close before the open
                    await self.deliver(closing)
                    await self.deliver(opening)
                else:
                    await self.deliver(closing)
            elif roll < 0.5 and fresh:
                dispute = provider.dispute(rng.choice(fresh))
                opening = provider.delivery("charge.dispute.created", dispute)
                if rng.random() < 0.2:  # hold the open back, to deliver it after the close
                    self.disputes_open.append((dispute, opening))
                else:
                    await self.deliver(opening)
                    self.disputes_open.append((dispute, None))
            elif roll < 0.75 and fresh:
                charge = rng.choice(fresh)
                amount = rng.choice([1, 50, 10**9])  # a part, or all that is left
                await self.deliver(
                    provider.delivery(
                        "charge.refunded", provider.refund_in_dashboard(charge, amount)
                    )
                )
            elif roll < 0.9 and self.delivered:
                await self.deliver(rng.choice(self.delivered))  # a duplicate
            else:
                payload, _ = provider.delivery(
                    "charge.refunded", {"id": "ch_1", "amount": 1, "amount_refunded": 1}
                )
                await self.deliver((payload, "0" * 64), forged=True)
        # whatever was never acknowledged is delivered again, like the processor would
        for _, opening in self.disputes_open:
            if opening is not None:
                await self.deliver(opening)

    def _credited(self, charge: str) -> bool:
        return self.item("purchases", {"id": f"charge#{charge}"}) is not None

    async def deliver(self, delivery: tuple[str, str], forged: bool = False) -> None:
        payload, signature = delivery
        response = await self.world.request(
            payload, None, "/webhooks/stripe", {"Stripe-Signature": signature}
        )
        status = None if response is None else response["statusCode"]
        self.outcomes[f"webhook {status}"] += 1
        self.log.append(f"webhook {json.loads(payload)['type']} forged={forged} -> {status}")
        if forged:
            if status not in (None, 400):
                self.violations.append(f"a forged delivery answered {status}")
            return
        if status == 400 or (status is not None and status not in (200, 500, 503)):
            self.violations.append(f"a delivery answered {status}: {response}")
        if status == 200:
            if delivery not in self.delivered:
                self.delivered.append(delivery)
            if delivery in self.undelivered:
                self.undelivered.remove(delivery)
        elif delivery not in self.undelivered:
            self.undelivered.append(delivery)  # no 2xx: the processor delivers it again
        if self.after_each:
            self.violations.extend(self.totals.check())

    async def redeliver(self) -> None:
        for _ in range(3):
            for delivery in list(self.undelivered):
                await self.deliver(delivery)

    async def run(self, attempt: Attempt) -> None:
        if attempt.mutation in ("streamQuery", "me"):
            body = {"query": DOCS[attempt.mutation], "variables": attempt.input}
        else:
            body = {"query": DOCS[attempt.mutation], "variables": {"i": attempt.input}}
        if attempt.key is not None:
            history = self.keys.setdefault(
                (attempt.user["sub"], attempt.mutation, attempt.key), KeyHistory()
            )
            history.digests.add(attempt.digest)
            self.inputs.setdefault((attempt.user["sub"], attempt.mutation, attempt.key), attempt)
            self.first_tried.setdefault(
                (attempt.user["sub"], attempt.mutation, attempt.key), self._writes
            )
            if attempt.user["sub"] in self.recent and attempt.note != "conflicting":
                self.recent[attempt.user["sub"]].append(attempt)
        response = await self.world.request(body, attempt.user)
        self.completed += 1
        if self.progress is not None and self.completed % 10_000 == 0:
            self.progress(self.completed)
        self.check(attempt, response)
        if self.after_each:
            self.violations.extend(self.totals.check())

    def check(self, attempt: Attempt, response: dict[str, Any] | None) -> None:
        summary = self._check(attempt, response)
        self.outcomes[summary] += 1
        self.log.append(
            f"{attempt.user['sub']} {attempt.mutation} key={attempt.key} "
            f"{json.dumps(attempt.input, sort_keys=True)} -> {summary}"
        )

    def _violation(self, attempt: Attempt, message: str) -> str:
        self.violations.append(
            f"{attempt.user['sub']} {attempt.mutation} {attempt.key} {attempt.input}: {message}"
        )
        return "VIOLATION"

    def _open(self, attempt: Attempt) -> None:
        if attempt.key is None:
            if attempt.mutation in ("settleWithdrawal", "refundPurchase"):
                self.open_keyless.append(attempt)
            return
        history = self.keys[(attempt.user["sub"], attempt.mutation, attempt.key)]
        if history.outcome is None and attempt.note != "conflicting":
            history.open = attempt

    def _check(self, attempt: Attempt, response: dict[str, Any] | None) -> str:
        if response is None:  # its container crashed: it may or may not have happened
            self._open(attempt)
            return "lost"
        if response["statusCode"] != 200:
            return self._violation(attempt, f"HTTP {response['statusCode']} {response['body']}")
        body = json.loads(response["body"])
        errors = body.get("errors")
        if errors:
            codes = {(e.get("extensions") or {}).get("code") for e in errors}
            if codes == {"TRY_AGAIN"}:
                self._open(attempt)
                return "TRY_AGAIN"
            return self._violation(attempt, f"errors {errors}")
        if attempt.mutation in ("streamQuery", "me"):
            return "read"
        payload = body["data"]["r"]
        typename = payload["__typename"]
        success = SUCCESS_ID.get(typename)
        found_id = payload[success[0]][success[1]] if success else None
        problem = (
            None
            if self._is_remembered(attempt, typename)
            else self._justify(attempt, typename, payload, found_id)
        )
        if problem:
            return self._violation(attempt, f"{typename}: {problem}")
        if attempt.key is not None and typename == "IdempotencyConflict":
            history = self.keys[(attempt.user["sub"], attempt.mutation, attempt.key)]
            if history.open is not None and history.open.digest == attempt.digest:
                history.open = None  # the open attempt itself was answered
        elif attempt.key is not None:
            history = self.keys[(attempt.user["sub"], attempt.mutation, attempt.key)]
            outcome = (typename, found_id)
            if history.open is not None and history.open.digest == attempt.digest:
                history.open = None
            if history.outcome is None:
                history.outcome = outcome
            elif history.outcome != outcome:
                return self._violation(
                    attempt, f"replay answered {outcome}, first answer was {history.outcome}"
                )
        self._learn(attempt, typename, found_id)
        return typename

    def _is_remembered(self, attempt: Attempt, typename: str) -> bool:
        """A replay of a user error under its key (checked when it was written)."""
        if attempt.key is None or typename in SUCCESS_ID:
            return False
        key = f"{attempt.user['sub']}#{attempt.mutation}#{attempt.key}"
        record = self.item("idempotency", {"key": key})
        return bool(record and record["status"] == "FAILED" and record["error"]["type"] == typename)

    def _learn(self, attempt: Attempt, typename: str, found_id: str | None) -> None:
        me = attempt.user["sub"]
        if typename == "LiveStreamStarted" and found_id:
            self.live.add(found_id, me)
        elif typename == "LiveStreamEnded" and found_id and found_id in self.live:
            self.ended.add(found_id, self.live.remove(found_id))
        elif typename == "VideoPublished" and found_id:
            self.videos.add(found_id, me)
        elif typename == "EventCreated" and found_id:
            self.events.add(found_id, me)
        elif typename == "CoinsPurchased" and found_id:
            if (found_id, me) not in self.purchases[-50:]:
                self.purchases.append((found_id, me))
        elif typename == "WithdrawalRequested" and found_id:
            self.withdrawals.append(found_id)

    def _justify(
        self, attempt: Attempt, typename: str, payload: dict[str, Any], found_id: str | None
    ) -> str | None:
        """Why this answer is allowed, from the store and the provider; None when it is."""
        value, me = attempt.input, attempt.user["sub"]
        if typename == "IdempotencyConflict":
            history = self.keys[(me, attempt.mutation, attempt.key or "")]
            return None if len(history.digests) > 1 else "the key was only used with this input"
        if typename == "CoinsPurchased":
            return self._exists("purchases", found_id)
        if typename == "GiftSent":
            return self._exists("transfers", found_id)
        if typename in ("LiveStreamStarted", "LiveStreamEnded"):
            stream = self.item("streams", {"id": found_id})
            if stream is None:
                return "no such stream in the store"
            if typename == "LiveStreamEnded" and stream["status"] != "ENDED":
                return "the stream is still live"
            return None
        if typename == "VideoPublished":
            return self._exists("videos", found_id)
        if typename == "EventCreated":
            return self._exists("events", found_id)
        if typename == "EventJoined":
            member = self.item("events", {"id": f"{value['eventId']}#{me}"})
            return None if member else "no membership in the store"
        if typename == "WithdrawalRequested":
            return self._exists("withdrawals", found_id)
        if typename == "WithdrawalSettled":
            stored = self.item("withdrawals", {"id": found_id})
            if stored is None or stored["status"] != value["outcome"]:
                return f"stored {stored and stored['status']}, answered {value['outcome']}"
            return None
        if typename == "PurchaseRefunded":
            stored = self.item("purchases", {"id": found_id})
            return None if stored and stored["status"] == "REFUNDED" else "not refunded"
        if typename == "ProfileUpdated":
            return None
        # user errors: each only when the store shows its cause
        if typename == "AccountRestricted":
            account = self.item("accounts", {"id": me})
            if account and account.get("restrictedBy"):
                return None
            # the refusal read the account, then a case closed before the answer was written
            # or delivered: right at its read, as long as that read was after the first try
            tried = self.first_tried.get((me, attempt.mutation, attempt.key or ""), 0)
            if self.freed.get(me, -1) > tried:
                return None
            return "the account is free"
        if typename == "AgeRestricted":
            return None if attempt.user is self.minor else "an adult was refused"
        if typename == "PaymentDeclined":
            record = self.item("idempotency", {"key": f"{me}#purchaseCoins#{attempt.key}"})
            declined = record and self.world.provider.declined(record.get("paymentId"))
            return None if declined else "the provider did not decline"
        if typename == "InsufficientCoins":
            if payload["available"] >= payload["required"]:
                return f"available {payload['available']} >= required {payload['required']}"
            return None
        if typename == "InsufficientDiamonds":
            if payload["available"] >= payload["required"]:
                return f"available {payload['available']} >= required {payload['required']}"
            return None
        if typename == "BelowMinimum":
            return None if value["diamonds"] < MINIMUM_DIAMONDS else "above the minimum"
        if typename == "DailyLimitExceeded":
            remaining = payload["remaining"]["amount"]
            return None if remaining < value["diamonds"] // 2 else f"{remaining} remained"
        if typename == "StreamNotLive":
            stream = self.item("streams", {"id": value["streamId"]})
            return None if stream and stream["status"] == "ENDED" else "the stream is live"
        if typename == "AlreadyJoined":
            member = self.item("events", {"id": f"{value['eventId']}#{me}"})
            return None if member else "not a member"
        if typename == "InvalidState":
            return self._invalid_state(attempt, payload.get("message"))
        if typename == "NotAllowed":
            return self._not_allowed(attempt)
        return f"unexpected answer {payload}"

    def _exists(self, table: str, item_id: str | None) -> str | None:
        return None if self.item(table, {"id": item_id}) else f"no {table} item {item_id}"

    def _not_allowed(self, attempt: Attempt) -> str | None:
        value, me = attempt.input, attempt.user["sub"]
        table, target = (
            ("videos", value["videoId"])
            if "videoId" in value
            else ("streams", value.get("streamId"))
        )
        found = self.item(table, {"id": target}) if target else None
        if attempt.mutation == "sendGift" and found and found["creatorId"] == me:
            return None
        if attempt.mutation == "endLiveStream" and found and found["creatorId"] != me:
            return None
        return "allowed by the store"

    def _invalid_state(self, attempt: Attempt, message: str | None) -> str | None:
        value, me = attempt.input, attempt.user["sub"]
        if attempt.mutation == "startLiveStream":  # the message names the live stream
            live = re.search(r"str_[0-9A-Z]{26}", message or "")
            stream = self.item("streams", {"id": live.group()}) if live else None
            return None if stream and stream["creatorId"] == me else f"no such stream: {message}"
        if attempt.mutation == "endLiveStream":
            stream = self.item("streams", {"id": value["streamId"]})
            return None if stream and stream["status"] == "ENDED" else "the stream is live"
        if attempt.mutation == "settleWithdrawal":
            stored = self.item("withdrawals", {"id": value["withdrawalId"]})
            if stored and stored["status"] not in ("PENDING", value["outcome"]):
                return None
            return f"stored {stored and stored['status']}"
        if attempt.mutation == "refundPurchase":
            stored = self.item("purchases", {"id": value["purchaseId"]})
            refused = stored and stored["chargeId"] in self.world.provider.refuse
            return None if refused else "the provider did not refuse"
        return "unexpected InvalidState"

    # --- after the run: faults off, every open attempt retried ---------------------------
    async def settle_open(self) -> int:
        """Retry every attempt whose answer never came or was TRY_AGAIN, with its key, until
        it has a definite answer; and a sample of the answered ones (they must replay)."""
        retried = 0
        for _ in range(3):
            pending = [h.open for h in self.keys.values() if h.open is not None]
            pending += self.open_keyless
            self.open_keyless = []
            answered = [
                a
                for (sub, mutation, key), h in self.keys.items()
                if h.open is None and h.outcome is not None
                for a in [self._replay_of(sub, mutation, key)]
                if a is not None and self.rng.random() < 0.1
            ]
            if not pending and retried:
                break
            for attempt in [*pending, *answered]:
                retried += 1
                await self.run(attempt)
        for history in self.keys.values():
            if history.open is not None:
                self.violations.append(f"still no answer after faults stopped: {history.open}")
        return retried

    def _replay_of(self, sub: str, mutation: str, key: str) -> Attempt | None:
        for attempt in self.recent.get(sub, ()):
            if attempt.mutation == mutation and attempt.key == key:
                return attempt
        return None
