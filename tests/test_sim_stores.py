"""The simulator's stores (tests/sim/stores.py), before the workload drives them: seeded runs
of purchases in both stores (retries with the same key, purchases shared between accounts,
forged receipts, test, sandbox and pending purchases), the stores refunding, reversing,
voiding, completing and cancelling with deliveries duplicated, reordered, lost and forged, and
store calls failing; then, faults off, everything delivered and caught up: every answer
justified by the stores, and every credited purchase holding what its store says now. Once
through both entrypoints with the store calls made at once, once inside the simulated world
(its scheduler, faults and crashes) as the workload will drive it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from infra import runtime
from infra.config import Settings
from infra.dynamo import Dynamo, from_item, to_item
from infra.services import Services
from infra.tables import ensure_tables
from resolvers.catalog import seed as seed_catalog
from resolvers.store_purchases import catch_up
from tests.clients import Client, claims_for
from tests.sim.scheduler import Scheduler, SimRuntime
from tests.sim.store import MemoryDynamo
from tests.sim.stores import PRODUCTS, REDEEM, STORE_FAULTS, SimStores
from tests.sim.world import World

PREFIX = "sim-"
# (path, body, headers, claims) -> (HTTP status, the body) or None when the answer was lost
Post = Callable[[str, str, dict[str, str], Any], Awaitable[tuple[int, Any] | None]]


@pytest.fixture
def settings() -> Settings:
    return Settings(
        table_prefix="test-", catalog_cache_seconds=60, store_test_accounts=SimStores.TESTERS
    )


def _direct(settings: Settings, store: Any) -> Services:
    """Services on the simulated store, outside the world: no scheduling, no faults (what the
    checker and the set-up use; tests/sim/run.py has its own)."""
    dynamo = Dynamo(settings, client=store)

    async def direct(operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = getattr(store, operation)(**kwargs)
        return result

    dynamo.invoke = direct  # type: ignore[method-assign]
    return Services(settings, dynamo, payments=None)


class DirectWorld:
    """The simulated world's calls without its scheduler: each store call runs at once, and
    meets a fault from a seeded chooser (timeouts only: a crash cancels the request's task,
    which only the real world's scheduler does)."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self.rng, self.rate = rng, rate
        self.faults_on = True
        self.injected: Counter[str] = Counter()

    async def step(self, label: str, owner: Any, run: Any) -> Any:
        return run(None)

    def pick(self, table: dict[str, int], allowed: Any) -> str | None:
        if not self.faults_on or self.rng.random() >= self.rate:
            return None
        kinds = [k for k in table if allowed(k) and not k.startswith("crash")]
        choice: str = self.rng.choices(kinds, [table[k] for k in kinds])[0]
        self.injected[choice] += 1
        return choice

    def crash(self, container: Any) -> None:
        raise AssertionError("no crashes outside the simulated world")


class StoreRun:
    """A seeded workload of store purchases and the stores' acts, and its checks."""

    def __init__(self, stores: SimStores, post: Post, seed: int) -> None:
        self.stores, self.post = stores, post
        self.rng = random.Random(seed)
        self.users = [claims_for(f"u{n:02d}") for n in range(6)]
        self.answered: list[tuple[dict[str, Any], dict[str, Any], str, str | None]] = []
        self.open: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.queue: list[Any] = []
        self.statuses: Counter[str] = Counter()

    async def redeem(self, user: dict[str, Any], value: dict[str, Any]) -> None:
        answer = await self.post(
            "/graphql", json.dumps({"query": REDEEM, "variables": {"i": value}}), {}, user
        )
        if answer is None:  # the container crashed: it may or may not have happened
            self.open.append((user, value))
            return
        status, body = answer
        assert status == 200, body
        if body.get("errors"):
            codes = {e["extensions"]["code"] for e in body["errors"]}
            assert codes == {"TRY_AGAIN"}, body  # nothing but a transient failure
            self.open.append((user, value))
            return
        result = body["data"]["r"]
        purchase = result.get("purchase", {}).get("id")
        self.answered.append((user, value, result["__typename"], purchase))

    async def deliver(self, delivery: Any) -> None:
        path, headers, body = delivery
        answer = await self.post(path, body, headers, None)
        status = None if answer is None else answer[0]
        self.statuses[str(status)] += 1
        if self.stores.is_forged(delivery):
            assert status in (None, 400, 401), answer
        else:
            assert status in (None, 200, 503), answer
            if status != 200:
                self.queue.append(delivery)  # no 2xx: the store delivers it again

    async def run(self, purchases: int) -> None:
        rng, stores = self.rng, self.stores
        for n in range(purchases):
            user = rng.choice(self.users)
            others = [u for u in self.users if u is not user]
            value = stores.buy(rng, user, others) | {"idempotencyKey": f"k{n}"}
            copies = rng.choice([1, 1, 2])  # the same key, twice at once
            await asyncio.gather(*(self.redeem(user, value) for _ in range(copies)))
            if rng.random() < 0.5:
                self.queue += stores.act(rng)
            while self.queue and rng.random() < 0.6:
                await self.deliver(self.queue.pop(rng.randrange(len(self.queue))))  # reordered

    async def settle(self, services: Services) -> None:
        """Faults are off: pending purchases complete, every delivery arrives, the catch-up
        runs (for the deliveries the stores lost), every attempt without an answer is retried
        and every PaymentPending asked again."""
        self.queue += self.stores.settle()
        while self.queue:
            await self.deliver(self.queue.pop(self.rng.randrange(len(self.queue))))
        assert (await catch_up(services)).failed == []
        open_, self.open = self.open, []
        for user, value in open_:
            await self.redeem(user, value)
        assert self.open == []
        for user, value, typename, _ in list(self.answered):
            if typename == "PaymentPending":
                await self.redeem(user, value)

    def check(self, services: Services) -> Counter[str]:
        stores = self.stores

        def item(table: str, key: dict[str, Any]) -> dict[str, Any] | None:
            found = services.dynamo.client.get_item(
                TableName=services.settings.table(table), Key=to_item(key), ConsistentRead=True
            )
            return from_item(found["Item"]) if "Item" in found else None

        def scan(table: str) -> list[dict[str, Any]]:
            page = services.dynamo.client.scan(TableName=services.settings.table(table))
            assert "LastEvaluatedKey" not in page
            return [from_item(i) for i in page["Items"]]

        kinds = Counter(typename for _, _, typename, _ in self.answered)
        # every store user error is the right answer
        for user, value, typename, _ in self.answered:
            if typename != "CoinsPurchased":
                problem = stores.justify(typename, value, user["sub"], item)
                assert problem is None, (typename, value, problem)
        # one purchase per store transaction, whoever redeemed it under whichever key
        purchases = [p for p in scan("purchases") if p["id"].startswith("pur_")]
        charges = Counter(p["chargeId"] for p in purchases)
        assert charges and max(charges.values()) == 1
        by_id = {p["id"]: p for p in purchases}
        for user, _, typename, purchase in self.answered:
            if typename == "CoinsPurchased":
                assert by_id[purchase]["accountId"] == user["sub"]
        # each credited purchase holds exactly what its store says now
        for purchase in purchases:
            charge = purchase["chargeId"]
            amount, currency = stores.paid(charge)
            back = stores.money_back(charge)
            assert (purchase["priceAmount"], purchase["currency"]) == (amount, currency)
            assert purchase.get("refunded", 0) == back, (purchase, back)
            assert purchase.get("takenBack", 0) == -(-purchase["coins"] * back // amount)
            assert purchase["status"] == ("REFUNDED" if back >= amount else "COMPLETED")
            if purchase["store"] == "PLAY_STORE":  # consumed, unless Google took it all back
                bought = stores.play[purchase["purchaseToken"]]
                assert bought.consumed or bought.state == "cancelled", purchase
        # the wallets hold what was credited less what was taken back
        accounts = {a["id"]: a for a in scan("accounts")}
        wallets = sum(accounts.get(u["sub"], {}).get("coins", 0) for u in self.users)
        assert wallets == sum(p["coins"] - p.get("takenBack", 0) for p in purchases)
        assert any(p.get("takenBack") for p in purchases)
        return kinds


async def test_a_seeded_run_of_both_stores_through_both_entrypoints(
    api: Client, services: Services
) -> None:
    world = DirectWorld(random.Random(8), 0.2)
    stores = SimStores(random.Random(9))
    stores.plug(SimpleNamespace(world=world, services=services))
    await SimStores.sell(services.catalog)

    async def post(path: str, body: str, headers: dict[str, str], claims: Any) -> Any:
        response = await api.request("POST", body, claims=claims, headers=headers, path=path)
        return response.status, json.loads(response.body)

    run = StoreRun(stores, post, seed=7)
    await run.run(70)
    world.faults_on = False
    await run.settle(services)
    kinds = run.check(services)
    assert kinds["CoinsPurchased"] >= 20 and kinds["ReceiptInvalid"] >= 3, kinds
    assert kinds["ReceiptAlreadyRedeemed"] >= 1 and kinds["PaymentPending"] >= 1, kinds
    assert sum(world.injected.values()) > 10 and run.statuses["401"] + run.statuses["400"] >= 2


@pytest.mark.parametrize("seed", [3, 4])
def test_a_seeded_run_inside_the_simulated_world(seed: int) -> None:
    """The world's scheduler, its DynamoDB faults and crashes, the stores' faults and crashes:
    the stores plugged into every container as `plug` says."""
    scheduler = Scheduler(random.Random(f"schedule-{seed}"))
    sim = SimRuntime(scheduler, random.Random(f"runtime-{seed}"))
    previous = runtime.install(sim)
    try:
        settings = dataclasses.replace(
            Settings(), table_prefix=PREFIX, store_test_accounts=SimStores.TESTERS
        )
        store = MemoryDynamo(clock=sim.time, copy_results=False)
        ensure_tables(store, settings)
        direct = _direct(settings, store)
        asyncio.run(seed_catalog(direct.catalog))
        asyncio.run(SimStores.sell(direct.catalog))
        world = World(seed, store, settings, 0.2, scheduler)
        stores = SimStores(random.Random(f"stores-{seed}"))
        make = world.container

        def container() -> Any:  # what World.container will do: every container plugged in
            made = make()
            if not getattr(made, "plugged", False):
                stores.plug(made)
                made.plugged = True
            return made

        world.container = container  # type: ignore[method-assign]
        # the checker's services: the world's stores, no faults once they are off
        stores.plug(SimpleNamespace(world=world, services=direct))

        async def post(path: str, body: str, headers: dict[str, str], claims: Any) -> Any:
            response = await world.request(body, claims, path, headers)
            return (
                None if response is None else (response["statusCode"], json.loads(response["body"]))
            )

        run = StoreRun(stores, post, seed)

        async def main() -> None:
            async def workload() -> None:
                await run.run(60)
                world.faults_on = False
                await run.settle(direct)

            task = asyncio.ensure_future(workload())
            await scheduler.drive(task.done)
            task.result()

        asyncio.run(main())
        kinds = run.check(direct)
        assert kinds["CoinsPurchased"] >= 15, kinds
        assert world.stats.crashes > 0 and sum(world.stats.faults.values()) > 20
    finally:
        runtime.install(previous)


def test_the_stores_arithmetic_is_the_stores() -> None:
    stores = SimStores(random.Random(1))
    rng = random.Random(2)
    tid = stores._buy_apple("sim.coins350", 1, "production", None, rng)
    stores.apple[tid].price, stores.apple[tid].currency = 4990, "USD"
    charge = f"APP_STORE#{tid}"
    assert stores.paid(charge) == (499, "USD") and stores.money_back(charge) == 0
    stores.refund_apple(tid, prorated=33_333)
    assert stores.money_back(charge) == 167  # 166.33 cents, rounded up
    stores.reverse_apple(tid)
    assert stores.money_back(charge) == 0
    token = stores._buy_play("sim.coins70", 3, "production", None, pending=False)
    charge = f"PLAY_STORE#{stores.play[token].transaction_id}"
    assert stores.paid(charge) == (3 * PRODUCTS["sim.coins70"][2], "USD")
    stores.void_play(token, 1)
    assert stores.money_back(charge) == 99
    stores.void_play(token, None)
    assert stores.money_back(charge) == 297 and stores.play[token].state == "cancelled"
    assert set(STORE_FAULTS) == {"timeout-before", "timeout-after", "crash-before", "crash-after"}
    forged = stores.forged(rng)
    assert all(stores.is_forged(d) for d in forged)
    assert not stores.is_forged(stores.refund_apple(tid))
    assert json.loads(forged[0][2])["signedPayload"].count(".") == 2
