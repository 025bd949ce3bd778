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

from infra import runtime
from infra.dynamo import from_item, to_item
from infra.earnings import ShardBalance
from tests.sim.checker import Totals
from tests.sim.stores import REDEEM, Delivery

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
    "redeemStorePurchase": REDEEM,
    "clearRestriction": """mutation X($i: ClearRestrictionInput!) {
      r: clearRestriction(input: $i) { __typename ... on RestrictionCleared { user { id } }
      ... on UserError { message } } }""",
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
    "RestrictionCleared": ("user", "id"),
    "ProfileUpdated": ("user", "id"),
}
PACKAGES = ["coins-70", "coins-350", "coins-700", "coins-1400", "coins-3500", "coins-7000"]
GIFTS = {"rose": 1, "panda": 5, "love-bang": 25, "rainbow-puke": 100, "concert": 500}
WEIGHTS = [8, 6, 5, 4, 2]
# The sim's economy is small (a few dozen clients): its minimum withdrawal ($2) and daily limit
# ($10) are scaled down so that creators reach both (tests/sim/run.py sets them).
MINIMUM_CENTS = 200
MINIMUM_DIAMONDS = MINIMUM_CENTS * 2
LIMIT_CENTS = 500


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
        self.variants: dict[tuple[str, str, str], list[Attempt]] = {}  # every input a key had
        self.after_each = True  # check the running invariants after every operation
        self.queue: list[Delivery] = []  # webhook deliveries waiting for a deliverer
        self.acting = True  # the processor still acts
        self.jump = 0.0  # seconds of time to pass at the processor's next turn
        self.pausing = False  # clients and deliverers wait while time passes
        self.inflight = 0  # requests sent and not answered
        self.detected_at: int | None = None  # operations completed when a violation showed
        self.read_started: dict[int, float] = {}  # a read's start, virtual seconds
        fidelity = getattr(world.store, "fidelity", None)
        # the store's bound on a stale read (a replica, or an index, behind), virtual seconds
        self.lag = max(fidelity.read_lag, fidelity.index_lag) if fidelity else 0.0
        self.stop_on_violation = False
        self.authenticating: list[str] = []  # payments waiting for the buyer's 3-D Secure
        self.delivered: list[Delivery] = []
        self.undelivered: list[Delivery] = []
        self.progress: Callable[[int], None] | None = None
        self._n = 0
        # linearizability of a refusal read before its write: the write sequence number at
        # which each key was first tried, and at which each account was last freed
        self._writes = 0
        self.first_tried: dict[tuple[str, str, str], int] = {}
        self.first_tried_at: dict[tuple[str, str, str], float] = {}  # virtual seconds
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
        error = dict(new["error"])
        typename = error.pop("type")
        if "remaining" in error:
            error["remaining"] = {"amount": error["remaining"]}
        # whichever input the key was sent with first claimed it (one may be a conflicting
        # variant whose first try was lost): the error must be justified for one of them
        tried = self.variants[(sub, mutation, idempotency_key)]
        problems = [self._justify(attempt, typename, error, None) for attempt in tried]
        if all(problems):
            self._violation(tried[0], f"remembered {typename}: {problems[0]}")

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
            if self._forgotten(past):  # older than the key's 24 hours: a client gives up
                return self._new(user), 1
            if rng.random() < 0.1 and past.key is not None:  # same key, other input
                changed = _conflicting(past.input, rng)
                if changed is not None:
                    return Attempt(user, past.mutation, past.key, changed, "conflicting"), 1
            return past, 1
        attempt = self._new(user)
        # the same keyed call twice at once; two admins acting on one thing at once
        admin = attempt.mutation in ("settleWithdrawal", "refundPurchase", "clearRestriction")
        copies = 2 if rng.random() < (0.25 if admin else 0.05 if attempt.key else 0) else 1
        return attempt, copies

    def _new(self, user: dict[str, Any]) -> Attempt:
        rng, me = self.rng, user["sub"]
        weights = {
            "buy": 14,
            "buy-declined": 2,
            "buy-3ds": 2,
            "buy-minor": 1,
            "redeem": 5,
            "start": 4,
            "end": 3,
            "publish": 2,
            "gift-stream": 30,
            "gift-video": 8,
            "gift-ended": 2,
            "gift-expensive": 2,
            "create-event": 2,
            "join": 10,
            "withdraw": 8,
            "withdraw-over": 1,
            "settle": 8 if "cognito:groups" in user else 0,
            "refund": 3 if "cognito:groups" in user else 0,
            "clear": 2 if "cognito:groups" in user else 0,
            "profile": 2,
            "read": 4,
        }
        kind = rng.choices(list(weights), list(weights.values()))[0]
        key = self.new_key()
        if kind.startswith("buy"):
            token = {"buy-declined": "tok_chargeDeclined", "buy-3ds": "tok_threeDSecure"}.get(
                kind, "tok_visa"
            )
            buyer = self.minor if kind == "buy-minor" else user
            package = rng.choice(PACKAGES)
            value = {"packageId": package, "paymentToken": token, "idempotencyKey": key}
            return Attempt(buyer, "purchaseCoins", key, value, kind)
        if kind == "redeem":  # bought in a store, then redeemed (or shared, forged, pending)
            others = [u for u in self.users if u is not user]
            value = self.world.stores.buy(rng, user, others) | {"idempotencyKey": key}
            return Attempt(user, "redeemStorePurchase", key, value, kind)
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
                gift = (
                    "universe" if kind == "gift-expensive" else rng.choices(list(GIFTS), WEIGHTS)[0]
                )
                quantity = rng.choice([1, 1, 1, 2, 5, 10])
                value = {"giftId": gift, "quantity": quantity, "idempotencyKey": key} | target
                return Attempt(user, "sendGift", key, value, kind)
            kind = "read"
        if kind == "create-event":
            keyed = rng.random() < 0.8
            value = {"title": f"Event {key}", "entryCoins": rng.choice([5, 20, 100, 300])}
            value |= {"idempotencyKey": key} if keyed else {}
            return Attempt(user, "createEvent", key if keyed else None, value, kind)
        if kind == "join":
            event = self.events.pick(rng, not_owner=me)
            if event is not None:
                value = {"eventId": event, "idempotencyKey": key}
                return Attempt(user, "joinEvent", key, value, kind)
            kind = "read"
        if kind.startswith("withdraw"):
            over = LIMIT_CENTS * 2 + 2
            held = self._withdrawable(me)
            if kind == "withdraw-over":
                diamonds = over
            elif held >= MINIMUM_DIAMONDS:  # what the creator has: the daily limit binds
                diamonds = rng.choice([400, 400, min(held, 600)])
            else:
                diamonds = rng.choice([398, 400, 800])
            if kind == "withdraw-over" or held >= MINIMUM_DIAMONDS or rng.random() < 0.1:
                value = {"diamonds": diamonds, "idempotencyKey": key}
                return Attempt(user, "requestWithdrawal", key, value, kind)
            kind = "read"
        if kind == "settle" and self.withdrawals:
            outcome = rng.choice(["PAID", "REJECTED"])
            value = {"withdrawalId": rng.choice(self.withdrawals[-8:]), "outcome": outcome}
            return Attempt(user, "settleWithdrawal", None, value, kind)
        if kind == "clear":
            restricted = [
                u["sub"]
                for u in self.users
                if (self.item("accounts", {"id": u["sub"]}) or {}).get("restrictedBy")
            ]
            if restricted:
                value = {"accountId": rng.choice(restricted)}
                return Attempt(user, "clearRestriction", None, value, kind)
            kind = "read"
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
            await self._paused()
            self.started += 1
            attempt, copies = self.choose(user)
            if copies == 1:
                await self.run(attempt)
            elif attempt.mutation == "settleWithdrawal" and self.rng.random() < 0.5:
                # two admins, one paying and one rejecting the same withdrawal at once
                other = "REJECTED" if attempt.input["outcome"] == "PAID" else "PAID"
                rival = Attempt(
                    self.users[1 - self.users.index(user)] if user in self.users[:2] else user,
                    attempt.mutation,
                    None,
                    {**attempt.input, "outcome": other},
                    "settle-race",
                )
                await asyncio.gather(self.run(attempt), self.run(rival))
            else:
                await asyncio.gather(*(self.run(attempt) for _ in range(copies)))

    # --- the payment processor: its own acts, and its webhook deliveries -------------------
    async def processor(self, every: int, deliverers: int = 4) -> None:
        """Acts at the processor about once per `every` operations, like Stripe's dashboard and
        the buyers' banks do: partial and repeated refunds, refunds left pending or failing
        later, disputes for part or all of a charge, inquiries, disputes escalated, won and lost,
        3-D Secure finished at the processor (racing the buyer's own retry), a declined intent
        paid again another way. Every act queues its event; `deliverers` concurrent deliverers
        send them in no particular order, some twice at once, some again later, some forged."""
        rng, provider = self.rng, self.world.provider
        workers = [asyncio.ensure_future(self._deliverer()) for _ in range(deliverers)]
        while self.started < self.operations:
            mark = self.started
            while self.started < min(mark + every, self.operations):
                await self.world.scheduler.sleep(0.01)  # virtual time: the clients go on
            self._act(rng, provider)
            if rng.random() < 0.05:  # the stores' hourly catch-up, as the scheduled function
                await self.catch_up()
            if self.jump:
                await self._time_passes(self.jump)
                self.jump = 0
        self.acting = False
        await asyncio.gather(*workers)

    def _act(self, rng: random.Random, provider: Any) -> None:
        self._drain()
        hold = self.world.settings.earnings_hold_seconds
        if hold and rng.random() < 0.06:  # time passes: hours, or past the hold
            self.jump = rng.choice([3600, 6 * 3600, hold // 2, hold + 8 * 3600, 2 * hold])
            return
        credited = [c for c in list(provider.charges)[-60:] if self._credited(c)]
        if credited and rng.random() < 0.6:  # most often a buyer who spent the coins
            spent = [c for c in credited if self._spent(c)]
            credited = spent or credited
        roll = rng.random()
        if roll < 0.22 and credited:
            charge = rng.choice(credited)
            amount = rng.choice([1, 50, 100, 250, 10**9])  # a part, or all that is left
            status = "pending" if rng.random() < 0.15 else "succeeded"
            obj = provider.refund_in_dashboard(charge, amount, status)
            if obj is not None:
                self._queue("charge.refunded", obj)
        elif roll < 0.30 and provider.refunds:
            refund = rng.choice(list(provider.refunds)[-40:])
            status = "succeeded" if rng.random() < 0.5 else "failed"
            self._queue("charge.refund.updated", provider.settle_refund(refund, status))
        elif roll < 0.50 and credited:
            undisputed = [c for c in credited if not provider.disputed_ever(c)]
            if undisputed:  # one dispute a charge (an inquiry may escalate into one)
                charge = rng.choice(undisputed)
                amount = provider.charges[charge].amount
                part = amount if rng.random() < 0.7 else rng.randrange(1, amount + 1)
                inquiry = rng.random() < 0.25
                self._queue("charge.dispute.created", provider.dispute(charge, part, inquiry))
        elif roll < 0.68 and provider.disputes:
            open_ = [d for d in list(provider.disputes)[-40:] if provider.dispute_open(d)]
            if open_:  # a dispute moves on; won, lost and warning_closed are final
                dispute = rng.choice(open_)
                status = provider.disputes[dispute]["status"]
                if status.startswith("warning_"):
                    moved = rng.choice(["warning_closed", "needs_response", "warning_under_review"])
                else:
                    moved = rng.choice(["won", "lost", "under_review"])
                obj = provider.move_dispute(dispute, moved)
                final = moved in ("won", "lost", "warning_closed")
                self._queue("charge.dispute.closed" if final else "charge.dispute.updated", obj)
                if moved == "won":
                    self._queue("charge.dispute.funds_reinstated", obj)
                elif moved == "needs_response":
                    self._queue("charge.dispute.funds_withdrawn", obj)
        elif roll < 0.80 and self.authenticating:
            payment = self.authenticating.pop(rng.randrange(len(self.authenticating)))
            provider.authenticate(payment)  # its payment_intent.succeeded: the outbox
        elif roll < 0.84:
            declined = [
                p for p, v in list(provider.payments.items())[-40:] if v.status == "declined"
            ]
            if declined:  # the buyer paid a declined intent again, outside the app
                provider.authenticate(rng.choice(declined))
        elif roll < 0.94 and self.delivered:
            self.queue.append(rng.choice(self.delivered))  # a duplicate, later
        else:
            payload, _ = provider.delivery(
                "charge.refunded", {"id": "ch_1", "object": "charge", "amount": 1}
            )
            self.queue.append(("/webhooks/stripe", {"Stripe-Signature": "0" * 64}, payload))
        if rng.random() < 0.3:  # the stores act too: refunds, reversals, voids, pending ends
            self.queue += self.world.stores.act(rng)

    def _stripe(self, kind: str, obj: dict[str, Any]) -> Delivery:
        """A signed Stripe delivery: (path, headers, body), as the stores' are."""
        payload, signature = self.world.provider.delivery(kind, obj)
        return ("/webhooks/stripe", {"Stripe-Signature": signature}, payload)

    def _forged(self, delivery: Delivery) -> bool:
        path, headers, _ = delivery
        if path == "/webhooks/stripe":
            return headers.get("Stripe-Signature") == "0" * 64
        return bool(self.world.stores.is_forged(delivery))

    def _queue(self, kind: str, obj: dict[str, Any]) -> None:
        delivery = self._stripe(kind, obj)
        self.queue.append(delivery)
        if self.rng.random() < 0.35:  # the same event, delivered twice at once
            self.queue.append(delivery)

    async def _time_passes(self, seconds: float) -> None:
        """Hours or days pass between two bursts of activity: no request is in flight while
        they do (a request does not take a day), then the clock jumps."""
        scheduler = self.world.scheduler
        self.pausing = True
        while self.inflight or scheduler.background:
            await scheduler.sleep(0.01)
        scheduler.jump(seconds)
        self.log.append(f"time jumps {seconds} s")
        self.pausing = False
        # the scheduled catch-up ran hourly meanwhile, again after a run that failed: its
        # windows (Google's voided purchases keep 30 days) never fall behind by more than a jump
        for _ in range(5):
            report = await self.catch_up()
            if report is not None and not report.failed:
                break

    async def _paused(self) -> None:
        while self.pausing:
            await self.world.scheduler.sleep(0.01)

    async def _deliverer(self) -> None:
        while self.acting or self.queue:
            await self._paused()
            if not self.queue:
                await self.world.scheduler.sleep(0.02)
                continue
            delivery = self.queue.pop(self.rng.randrange(len(self.queue)))
            await self.deliver(delivery)

    def _withdrawable(self, account_id: str) -> int:
        """Roughly what a creator could withdraw now (the checker's own read of the store)."""
        account = self.item("accounts", {"id": account_id}) or {}
        total = int(account.get("diamonds", 0))  # owed diamonds: the product decides
        hold, now = self.world.settings.earnings_hold_seconds, runtime.current().time()
        for shard in range(int(account.get("shards") or 0)):
            item = self.item("earnings", {"id": f"{account_id}#{shard:02d}"})
            total += ShardBalance.of(shard, item, hold, now).available
        return total

    def _credited(self, charge: str) -> bool:
        return self.item("purchases", {"id": f"charge#{charge}"}) is not None

    def _spent(self, charge: str) -> bool:
        """Whether the buyer's wallet holds less than the purchase's coins."""
        alias = self.item("purchases", {"id": f"charge#{charge}"}) or {}
        purchase = self.item("purchases", {"id": alias.get("purchaseId", "")}) or {}
        if not purchase:  # the credit's transaction is applied halfway
            return False
        wallet = self.item("accounts", {"id": purchase["accountId"]}) or {}
        return int(wallet.get("coins", 0)) < int(purchase.get("coins", 0))

    async def deliver(self, delivery: Delivery) -> None:
        path, headers, payload = delivery
        forged = self._forged(delivery)
        self.inflight += 1
        try:
            response = await self.world.request(payload, None, path, headers)
        finally:
            self.inflight -= 1
        status = None if response is None else response["statusCode"]
        self.outcomes[f"webhook {status}"] += 1
        self.log.append(f"webhook {path} {payload[:60]} forged={forged} -> {status}")
        if forged:
            if status not in (None, 400, 401):
                self.violations.append(f"a forged delivery to {path} answered {status}")
            return
        if status is not None and status not in (200, 503):
            self.violations.append(f"a delivery to {path} answered {status}: {response}")
        if status == 200:
            if delivery not in self.delivered:
                self.delivered.append(delivery)
            if delivery in self.undelivered:
                self.undelivered.remove(delivery)
        elif delivery not in self.undelivered:
            self.undelivered.append(delivery)  # no 2xx: the processor delivers it again
        if self.after_each:
            self.violations.extend(self.totals.check())
        self._detected()

    def _detected(self) -> None:
        """Note the operation at which the first violation showed; with `stop_on_violation`
        (the mutation suite) no new operation starts after it."""
        if self.violations and self.detected_at is None:
            self.detected_at = self.completed
            if self.stop_on_violation:
                self.started = self.operations

    async def catch_up(self) -> Any:
        """The scheduled function reading what the stores refunded (a lost notification's
        only way in) and consuming what Google left unconsumed."""
        from resolvers.store_purchases import catch_up

        self.inflight += 1
        try:
            report = await self.world.scheduled(catch_up)
        finally:
            self.inflight -= 1
        self.outcomes["store catch-up"] += 1
        if self.after_each:
            self.violations.extend(self.totals.check())
        return report

    async def redeliver(self) -> None:
        """After the run: the buyers still authenticating finish, and everything the processor
        has not had a 2xx for is delivered again, as Stripe does for three days."""
        self.finish_authentication()
        for _ in range(4):
            for delivery in list(self.undelivered):
                await self.deliver(delivery)
        for _ in range(3):  # then the catch-up, until a run of it fails nothing
            report = await self.catch_up()
            if report is not None and not report.failed:
                break

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
            variants = self.variants.setdefault(
                (attempt.user["sub"], attempt.mutation, attempt.key), []
            )
            if all(v.digest != attempt.digest for v in variants):
                variants.append(attempt)
            self.first_tried_at.setdefault(
                (attempt.user["sub"], attempt.mutation, attempt.key), self.totals.now()
            )
            self.first_tried.setdefault(
                (attempt.user["sub"], attempt.mutation, attempt.key), self._writes
            )
            if attempt.user["sub"] in self.recent and attempt.note != "conflicting":
                self.recent[attempt.user["sub"]].append(attempt)
        if attempt.mutation in ("streamQuery", "me"):
            self.read_started[id(attempt)] = self.totals.now()
        self.inflight += 1
        try:
            response = await self.world.request(body, attempt.user)
        finally:
            self.inflight -= 1
        self.completed += 1
        if self.progress is not None and self.completed % 10_000 == 0:
            self.progress(self.completed)
        self.check(attempt, response)
        if self.after_each:
            self.violations.extend(self.totals.check())
        self._detected()

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
            problem = self._read_answer(attempt, body["data"])
            return self._violation(attempt, problem) if problem else "read"
        payload = body["data"]["r"]
        typename = payload["__typename"]
        if self._forgotten(attempt):
            # answered more than a day after the key's first try (time jumped meanwhile): the
            # store may have forgotten the key, and the request was a new one; what it did is
            # held to the invariants, not to the key's first answer
            self.keys[(attempt.user["sub"], attempt.mutation, attempt.key or "")].open = None
            self._learn(attempt, typename, None)
            return typename
        if typename == "PaymentActionRequired":  # not definite: the buyer must authenticate
            return self._needs_action(attempt)
        if typename == "PaymentPending":  # not definite: credited once the store completes it
            problem = self.world.stores.justify(
                typename, attempt.input, attempt.user["sub"], self.item
            )
            if problem:
                return self._violation(attempt, f"PaymentPending: {problem}")
            self._open(attempt)
            return typename
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

    def _forgotten(self, attempt: Attempt) -> bool:
        """Whether the attempt's key is older than the idempotency records' TTL (less an hour):
        the store may have forgotten it, and a retry would be a new request."""
        if attempt.key is None:
            return False
        first = self.first_tried_at.get((attempt.user["sub"], attempt.mutation, attempt.key))
        ttl = self.world.settings.idempotency_ttl_seconds
        return first is not None and self.totals.now() - first > ttl - 3600

    def _needs_action(self, attempt: Attempt) -> str:
        me = attempt.user["sub"]
        record = self.item("idempotency", {"key": f"{me}#purchaseCoins#{attempt.key}"}) or {}
        if not record:  # expired: nothing to say about a key that old
            self._open(attempt)
            return "PaymentActionRequired"
        payment = self.world.provider.payments.get(record.get("paymentId", ""))
        if attempt.input.get("paymentToken") != "tok_threeDSecure" or payment is None:
            return self._violation(attempt, "PaymentActionRequired for a card that needs none")
        if payment.status == "requires_action" and payment.id not in self.authenticating:
            self.authenticating.append(payment.id)
        self._open(attempt)
        return "PaymentActionRequired"

    def finish_authentication(self) -> None:
        """When the run ends, every buyer still authenticating finishes: the payment succeeds
        at the processor, and its payment_intent.succeeded is to be delivered."""
        provider = self.world.provider
        for payment in self.authenticating:
            provider.authenticate(payment)
        self.authenticating = []
        self._drain()
        self.undelivered += self.world.stores.settle()  # pending store purchases complete

    def _drain(self) -> None:
        """What Stripe sends of itself (payment_intent.succeeded for every payment that
        succeeds, however it succeeded) joins the deliveries."""
        provider = self.world.provider
        while provider.outbox:
            kind, obj = provider.outbox.pop(0)
            if self.acting:
                self._queue(kind, obj)
            else:
                self.undelivered.append(self._stripe(kind, obj))

    def _read_answer(self, attempt: Attempt, data: dict[str, Any]) -> str | None:
        """A read's answer must be what the store held at some moment of the request (or, for
        an eventually consistent read, up to the store's lag before it)."""
        since = attempt_started = self.read_started.pop(id(attempt), None)
        if attempt_started is None or self.totals.clock is None:  # no history (real engine)
            return None
        since -= self.lag
        totals, me = self.totals, attempt.user["sub"]
        if attempt.mutation == "me":
            wallet = data["me"]["wallet"]
            if not totals.was(("coins", me), wallet["coins"], since):
                return f"me.wallet.coins {wallet['coins']} never held since the request began"
            account = self.item("accounts", {"id": me}) or {}
            if not account.get("shards") and not totals.was(
                ("diamonds", me), wallet["diamonds"], since
            ):  # (a creator's shards are read each at its own moment: their sum may never be)
                return f"me.wallet.diamonds {wallet['diamonds']} never held"
            return None
        stream = data.get("liveStream")
        if stream is None:
            return None
        sid = attempt.input["id"]
        if not totals.between(("stream", sid), stream["coinsReceived"], since):
            return f"coinsReceived {stream['coinsReceived']} of {sid} never held"
        for entry in stream["topGifters"]:
            if not totals.was(("rank", sid, entry["user"]["id"]), entry["coins"], since):
                return f"topGifters {entry} of {sid} never held"
        return None

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
            if stored and stored["status"] == "REFUNDED":
                return None
            # converged to the charge as it is now: a refund that failed since returned money
            charge = (stored or {}).get("chargeId", "")
            provider = self.world.provider
            if (
                stored
                and charge in provider.charges
                and provider.money_back(charge) < (provider.charges[charge].amount)
            ):
                return None
            return "not refunded"
        if typename in ("ProfileUpdated", "RestrictionCleared"):
            return None
        # user errors: each only when the store shows its cause
        if typename in ("ReceiptInvalid", "ReceiptAlreadyRedeemed", "PaymentPending"):
            return self.world.stores.justify(typename, value, me, self.item)
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
            if stored and stored.get("store"):  # refunds of store purchases are the store's
                return None
            provider = self.world.provider
            charge = (stored or {}).get("chargeId", "")
            refused = any(
                d["charge"] == charge and not d["status"].startswith("warning_")
                for d in provider.disputes.values()
            ) or any(  # or its refund failed
                r["charge"] == charge and r["status"] == "failed" for r in provider.refunds.values()
            )
            return None if refused else "the provider did not refuse"
        return "unexpected InvalidState"

    # --- after the run: faults off, every open attempt retried ---------------------------
    async def settle_open(self) -> int:
        """Retry every attempt whose answer never came or was TRY_AGAIN, with its key, until
        it has a definite answer; and a sample of the answered ones (they must replay)."""
        retried = 0
        for _ in range(3):
            self.finish_authentication()  # buyers asked to authenticate do so
            for history in self.keys.values():  # keys older than their TTL: never retried
                if history.open is not None and self._forgotten(history.open):
                    history.open = None
            pending = [h.open for h in self.keys.values() if h.open is not None]
            pending += self.open_keyless
            self.open_keyless = []
            answered = [
                a
                for (sub, mutation, key), h in self.keys.items()
                if h.open is None and h.outcome is not None
                for a in [self._replay_of(sub, mutation, key)]
                if a is not None and not self._forgotten(a) and self.rng.random() < 0.1
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
