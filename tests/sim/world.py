"""The simulated world: processes (Lambda containers) on one store and one payment provider,
with faults injected at every call the code under test makes to either.

A container is what a Lambda execution environment is: its own `Services` (catalog cache,
stream facts, DataLoaders per request) and the GraphQL handler (`make_async_handler`) over
the shared store. A crash kills a container: its in-flight request is cancelled at the step it
had reached, its caches are gone, and a new container takes its place.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

from handlers.lambda_api import make_async_handler
from infra.config import Settings
from infra.dynamo import Dynamo
from infra.payments import (
    ACTION,
    DECLINED,
    SUCCEEDED,
    ChargeState,
    Dispute,
    Payment,
    ProviderUnavailable,
    Refund,
    RefundRefused,
)
from infra.services import Services
from tests.clients import lambda_event
from tests.faults import client_error
from tests.sim.scheduler import Crash, Parked, Scheduler

# How an injected fault is split between kinds (the total rate is `World.fault_rate`). With a
# store that models contention (tests/sim/store.py, Fidelity) real conflicts come from
# overlapping transactions; the die roll keeps a few more on transactions.
STORE_FAULTS = {
    "TransactionConflict": 10,
    "ThrottlingException": 12,
    "ProvisionedThroughputExceededException": 8,
    "InternalServerError": 12,
    "timeout-before": 15,
    "timeout-after": 18,
    "crash-before": 5,
    "crash-after": 5,
}
PROVIDER_FAULTS = {
    "timeout-before": 35,
    "timeout-after": 35,
    "decline": 10,
    "crash-before": 10,
    "crash-after": 10,
}
WRITES = frozenset({"put_item", "update_item", "delete_item", "transact_write_items"})


class SimProvider:
    """The payment processor's side, shaped like Stripe: PaymentIntents created and confirmed
    once per key (a repeat answers the intent's state), 3-D Secure finished by the buyer at the
    processor, charges with partial and repeated refunds (the charge's `amount_refunded` is
    cumulative; a refund may stay pending or fail later), disputes with their own amounts,
    inquiries that move no funds, funds withdrawn and reinstated, won and lost; and its signed
    webhook deliveries (Stripe's object shapes). `charge` answers a charge as it is now, which
    is what the code under test follows; `money_back` is what the checker holds it to."""

    SECRET = b"sim-webhook-secret"

    def __init__(self) -> None:
        self.payments: dict[str, Payment] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.by_key: dict[str, str] = {}  # create key (the purchase id) -> payment id
        self.refund_by_key: dict[str, str] = {}
        self.charges: dict[str, Payment] = {}  # approved charges: the money that really moved
        self.refunds: dict[str, dict[str, Any]] = {}  # refund id -> Stripe's refund object
        self.disputes: dict[str, dict[str, Any]] = {}  # dispute id -> Stripe's dispute object
        self.outbox: list[tuple[str, dict[str, Any]]] = []  # events Stripe sends of itself
        self._n = 0

    def _next(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    # --- the API the code under test calls --------------------------------------------
    def create(self, amount: int, currency: str, key: str, metadata: dict[str, str]) -> str:
        if key not in self.by_key:
            payment = Payment(self._next("pay"), "requires_payment_method", amount, currency)
            self.payments[payment.id] = payment
            self.metadata[payment.id] = dict(metadata)
            self.by_key[key] = payment.id
        return self.by_key[key]

    def confirm(self, payment_id: str, token: str, decline: bool) -> Payment:
        payment = self.payments[payment_id]
        if payment.status != "requires_payment_method":
            return self.retrieve(payment_id)  # confirmed before: its state, never a new charge
        if token == "tok_threeDSecure" and not decline:
            payment = replace(payment, status=ACTION, client_secret=f"{payment_id}_secret")
        elif token == "tok_visa" and not decline:
            payment = self._succeed(payment)
        else:
            payment = replace(payment, status=DECLINED, decline_code="card_declined")
        self.payments[payment_id] = payment
        return self.retrieve(payment_id)

    def _succeed(self, payment: Payment) -> Payment:
        charged = replace(payment, status=SUCCEEDED, charge_id=self._next("ch"), client_secret=None)
        self.charges[charged.charge_id or ""] = charged
        self.payments[payment.id] = charged
        self.outbox.append(("payment_intent.succeeded", self.intent_object(payment.id)))
        return charged

    def retrieve(self, payment_id: str) -> Payment:
        payment = self.payments[payment_id]
        return replace(payment, metadata=tuple(sorted(self.metadata[payment_id].items())))

    def declined(self, payment_id: str | None) -> bool:
        """Whether the processor declined this payment when it was confirmed."""
        payment = self.payments.get(payment_id or "")
        return payment is not None and (
            payment.status == DECLINED or payment.decline_code is not None
        )

    def refund(self, payment_id: str, key: str, amount: int | None = None) -> str:
        if key in self.refund_by_key:
            return self.refund_by_key[key]
        payment = self.payments[payment_id]
        charge = payment.charge_id or ""
        if charge not in self.charges:
            raise RefundRefused("charge_not_refundable")
        if self.disputed_now(charge):
            raise RefundRefused("charge_disputed")
        left = self.charges[charge].amount - self.refunded(charge)
        wanted = left if amount is None else amount
        if left <= 0 or wanted <= 0 or wanted > left:
            raise RefundRefused("charge_already_refunded")
        refund = self._refund(charge, wanted, "succeeded")
        self.refund_by_key[key] = refund["id"]
        self.outbox.append(("charge.refunded", self.charge_object(charge)))  # as Stripe sends
        return refund["id"]

    def charge(self, charge_id: str) -> ChargeState:
        paid = self.charges[charge_id]
        return ChargeState(
            charge_id,
            paid.amount,
            paid.currency,
            "succeeded",
            paid.id,
            tuple(
                Refund(r["id"], r["amount"], r["status"])
                for r in self.refunds.values()
                if r["charge"] == charge_id
            ),
            tuple(
                Dispute(d["id"], d["amount"], d["status"], d["withdrawn"])
                for d in self.disputes.values()
                if d["charge"] == charge_id
            ),
        )

    # --- the processor's own acts -------------------------------------------------------
    def refunded(self, charge_id: str) -> int:
        return self.charge(charge_id).refunded

    def money_back(self, charge_id: str) -> int:
        return self.charge(charge_id).money_back

    def disputed_now(self, charge_id: str) -> bool:
        """An open or lost dispute (not an inquiry, not won) makes a charge unrefundable."""
        return any(
            d["charge"] == charge_id
            and d["status"] not in ("won",)
            and not d["status"].startswith("warning_")
            for d in self.disputes.values()
        )

    def disputed_ever(self, charge_id: str) -> bool:
        return any(d["charge"] == charge_id for d in self.disputes.values())

    def dispute_open(self, dispute_id: str) -> bool:
        return self.disputes[dispute_id]["status"] not in ("won", "lost", "warning_closed")

    def _refund(self, charge_id: str, amount: int, status: str) -> dict[str, Any]:
        refund = {
            "id": self._next("re"),
            "object": "refund",
            "charge": charge_id,
            "payment_intent": self.charges[charge_id].id,
            "amount": amount,
            "status": status,
        }
        self.refunds[refund["id"]] = refund
        return refund

    def refund_in_dashboard(
        self, charge_id: str, amount: int, status: str = "succeeded"
    ) -> dict[str, Any] | None:
        """A refund made in the processor's dashboard (a part, or all that is left); None
        when nothing is left to refund or the charge is disputed."""
        left = self.charges[charge_id].amount - self.refunded(charge_id)
        if left <= 0 or self.disputed_now(charge_id):
            return None
        self._refund(charge_id, min(amount, left), status)
        return self.charge_object(charge_id)

    def settle_refund(self, refund_id: str, status: str) -> dict[str, Any]:
        """A pending refund succeeds, or any refund fails later (its money comes back)."""
        refund = self.refunds[refund_id]
        if refund["status"] not in ("failed", "canceled"):
            refund["status"] = status
        return dict(refund)

    def dispute(self, charge_id: str, amount: int, inquiry: bool) -> dict[str, Any]:
        """A dispute opened by the buyer's bank; a dispute (not an inquiry) withdraws its
        amount from the platform's balance at once."""
        dispute = {
            "id": self._next("dp"),
            "object": "dispute",
            "charge": charge_id,
            "payment_intent": self.charges[charge_id].id,
            "amount": amount,
            "status": "warning_needs_response" if inquiry else "needs_response",
            "withdrawn": 0 if inquiry else amount,
        }
        self.disputes[dispute["id"]] = dispute
        return self.dispute_object(dispute["id"])

    def move_dispute(self, dispute_id: str, status: str) -> dict[str, Any]:
        """An inquiry escalated or closed; a dispute won (funds reinstated) or lost."""
        dispute = self.disputes[dispute_id]
        if status in ("needs_response", "under_review", "lost"):
            dispute["withdrawn"] = dispute["amount"]
        elif status == "won":
            dispute["withdrawn"] = 0
        dispute["status"] = status
        return self.dispute_object(dispute_id)

    def authenticate(self, payment_id: str) -> dict[str, Any] | None:
        """The buyer finished 3-D Secure, or paid a declined intent again another way, at the
        processor: the intent succeeds (payment_intent.succeeded)."""
        payment = self.payments[payment_id]
        if payment.status not in (ACTION, DECLINED):
            return None
        self.payments[payment_id] = self._succeed(payment)
        return self.intent_object(payment_id)

    # --- what the audit lists (every one: the run is one window) -------------------------
    async def charges_between(self, since: int, until: int) -> list[dict[str, Any]]:
        return [{"id": c} for c in self.charges]

    async def refunds_between(self, since: int, until: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self.refunds.values()]

    async def disputes_between(self, since: int, until: int) -> list[dict[str, Any]]:
        return [self.dispute_object(d) for d in self.disputes]

    # --- Stripe's object shapes, for webhook deliveries ---------------------------------
    def charge_object(self, charge_id: str) -> dict[str, Any]:
        paid = self.charges[charge_id]
        refunded = self.refunded(charge_id)
        return {
            "id": charge_id,
            "object": "charge",
            "amount": paid.amount,
            "amount_refunded": refunded,
            "refunded": refunded >= paid.amount,
            "currency": paid.currency.lower(),
            "payment_intent": paid.id,
            "disputed": any(d["charge"] == charge_id for d in self.disputes.values()),
        }

    def dispute_object(self, dispute_id: str) -> dict[str, Any]:
        d = self.disputes[dispute_id]
        moved = (
            [{"amount": -d["amount"]}]
            if d["amount"] and not d["status"].startswith("warning_")
            else []
        )
        if d["status"] == "won":
            moved.append({"amount": d["amount"]})
        return {k: v for k, v in d.items() if k != "withdrawn"} | {"balance_transactions": moved}

    def intent_object(self, payment_id: str) -> dict[str, Any]:
        p = self.payments[payment_id]
        return {
            "id": p.id,
            "object": "payment_intent",
            "amount": p.amount,
            "currency": p.currency.lower(),
            "status": p.status,
            "latest_charge": p.charge_id,
            "metadata": dict(self.metadata[payment_id]),
        }

    def delivery(self, kind: str, obj: dict[str, Any]) -> tuple[str, str]:
        payload = json.dumps({"id": self._next("evt"), "type": kind, "data": {"object": obj}})
        return payload, hmac.new(self.SECRET, payload.encode(), hashlib.sha256).hexdigest()

    def event(self, payload: bytes, signature: str | None) -> Any:
        expected = hmac.new(self.SECRET, payload, hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(expected, signature):
            raise ValueError("the signature does not verify")
        body = json.loads(payload)
        return SimpleNamespace(id=body["id"], type=body["type"])


@dataclass
class Stats:
    faults: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    containers: int = 0


class World:
    def __init__(
        self,
        seed: int,
        store: Any,
        settings: Settings,
        fault_rate: float,
        scheduler: Scheduler | None,
        entrypoint: str = "lambda",
    ) -> None:
        self.entrypoint = entrypoint
        self.rng = random.Random(f"faults-{seed}")
        self.store = store
        self.settings = settings
        self.fault_rate = fault_rate
        self.scheduler = scheduler
        self.provider = SimProvider()
        self.stats = Stats()
        self.idle: list[Container] = []
        self.containers: list[Container] = []
        self.faults_on = True
        # Transactions in two phases over scheduler steps (a store that models contention).
        self.staged = scheduler is not None and getattr(store, "fidelity", None) is not None

    def container(self) -> Container:
        if self.idle:
            return self.idle.pop()
        self.stats.containers += 1
        container = Container(self, self.stats.containers)
        self.containers.append(container)
        return container

    def absorbed(self) -> Counter[str]:
        """Faults the code under test retried inside requests, by kind."""
        total: Counter[str] = Counter()
        for container in self.containers:
            total += container.services.dynamo.faults
        return total

    def release(self, container: Container) -> None:
        if container.alive:
            self.idle.append(container)

    async def request(
        self,
        body: dict[str, Any] | str,
        claims: dict[str, Any] | None,
        path: str = "/graphql",
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One request through the entrypoint (GraphQL, or a webhook delivery at `path`);
        None when its container crashed before answering (the caller never hears back)."""
        container = self.container()
        text = body if isinstance(body, str) else json.dumps(body)
        task = asyncio.ensure_future(container.handle(text, claims, path, headers or {}))
        container.inflight = task
        try:
            response = await task
        except (asyncio.CancelledError, Crash):
            if not (task.cancelled() or isinstance(task.exception(), Crash)):
                raise
            return None
        finally:
            container.inflight = None
            self.release(container)
        return response

    def begin_transaction(self, **kwargs: Any) -> asyncio.Future[dict[str, Any]]:
        """Decide a TransactWriteItems (what cancels or rejects it is raised now) and schedule
        its commit steps as the store's own work; the future is its answer once applied."""
        staged = self.store.begin_transact_write_items(**kwargs)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if staged.done:  # a replay of a finished token
            answer.set_result({})
            return answer
        assert self.scheduler is not None

        def commit(parked: Parked) -> None:
            if self.store.commit_step(staged):
                if not answer.done():  # its caller may have crashed (cancelled) meanwhile
                    answer.set_result({})
            else:
                self.scheduler.spawn("commit", commit)  # type: ignore[union-attr]

        self.scheduler.spawn("commit", commit)
        return answer

    async def step(self, label: str, owner: Container, run: Callable[[Parked | None], Any]) -> Any:
        """One call out of the code under test: scheduled in a seeded run; on a real engine
        (no scheduler), run in a worker thread as the code would, with real concurrency."""
        if self.scheduler is not None:
            return await self.scheduler.call(label, owner, run)
        return await asyncio.to_thread(run, None)

    # --- faults -------------------------------------------------------------------------
    def pick(self, table: dict[str, int], allowed: Callable[[str], bool]) -> str | None:
        if not self.faults_on or self.rng.random() >= self.fault_rate:
            return None
        kinds = [k for k in table if allowed(k)]
        weights = [table[k] for k in kinds]
        choice: str = self.rng.choices(kinds, weights)[0]
        self.stats.faults[choice] += 1
        return choice

    def crash(self, container: Container) -> None:
        """The process dies: its in-flight request and every parked call of it are gone."""
        self.stats.crashes += 1
        container.alive = False
        if container in self.idle:
            self.idle.remove(container)
        for parked in self.scheduler.drop(container) if self.scheduler else ():
            if parked.future is not None:
                parked.future.cancel()
        if container.inflight is not None:
            if self.scheduler is not None:
                container.inflight.cancel()
            else:  # called from a worker thread
                container.inflight.get_loop().call_soon_threadsafe(container.inflight.cancel)


class Container:
    """One simulated Lambda execution environment."""

    def __init__(self, world: World, number: int) -> None:
        self.world = world
        self.number = number
        self.alive = True
        self.inflight: asyncio.Future[Any] | None = None
        dynamo = Dynamo(world.settings, client=world.store)
        dynamo.invoke = self.invoke
        self.services = Services(world.settings, dynamo, payments=_Payments(self))
        if world.entrypoint == "lambda":
            lambda_handler = make_async_handler(self.services)

            async def handle(
                body: str, claims: dict[str, Any] | None, path: str, headers: dict[str, str]
            ) -> Any:
                event = lambda_event("POST", body, claims=claims, headers=headers, path=path)
                return await lambda_handler(event)

        else:
            handle = _aiohttp_handler(self.services)
        self.handle: Callable[[str, dict[str, Any] | None, str, dict[str, str]], Awaitable[Any]] = (
            handle
        )

    async def invoke(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        world = self.world
        if operation == "transact_write_items" and world.staged:
            # Two phases, as DynamoDB runs it: the call decides it (or raises), then the store
            # applies it over later steps of its own while it holds its items; the answer
            # comes when it is applied.
            committed = await world.step(
                operation, self, lambda parked: self._store_call(operation, kwargs)
            )
            return await committed  # type: ignore[no-any-return]
        return await world.step(  # type: ignore[no-any-return]
            operation, self, lambda parked: self._store_call(operation, kwargs)
        )

    def _store_call(self, operation: str, kwargs: dict[str, Any]) -> Any:
        world = self.world
        write = operation in WRITES

        def allowed(kind: str) -> bool:
            if kind == "TransactionConflict":
                return operation == "transact_write_items"
            return write or not kind.endswith("-after")

        fault = world.pick(STORE_FAULTS, allowed)
        method = getattr(world.store, operation)
        if operation == "transact_write_items" and world.staged:
            method = world.begin_transaction
        if fault is None:
            return method(**kwargs)
        if fault == "TransactionConflict":
            reasons = [{"Code": "None"} for _ in kwargs["TransactItems"]]
            reasons[world.rng.randrange(len(reasons))] = {"Code": "TransactionConflict"}
            raise client_error(
                "TransactionCanceledException", operation, CancellationReasons=reasons
            )
        if fault.startswith("timeout"):
            if fault == "timeout-after":
                method(**kwargs)
            raise TimeoutError("read timeout")
        if fault.startswith("crash"):
            if fault == "crash-after":
                method(**kwargs)
            world.crash(self)
            raise Crash(operation)
        raise client_error(fault, operation)


class _Payments:
    """The container's client of the processor: every call parks, and may meet a fault."""

    name = "sim"

    def __init__(self, container: Container) -> None:
        self.container = container

    async def _step(self, label: str, act: Callable[[str | None], Any]) -> Any:
        def run(parked: Parked | None) -> Any:
            fault = self.container.world.pick(PROVIDER_FAULTS, lambda kind: True)
            if fault is None or fault == "decline":
                return act(fault)
            if fault.endswith("-after"):
                act(None)
            if fault.startswith("crash"):
                self.container.world.crash(self.container)
                raise Crash("provider")
            raise ProviderUnavailable(fault)

        return await self.container.world.step(label, self.container, run)

    @property
    def _provider(self) -> SimProvider:
        return self.container.world.provider

    async def create(
        self, *, amount: int, currency: str, key: str, metadata: dict[str, str]
    ) -> str:
        return await self._step(  # type: ignore[no-any-return]
            "provider.create", lambda fault: self._provider.create(amount, currency, key, metadata)
        )

    async def confirm(self, payment_id: str, token: str, key: str) -> Payment:
        # a "decline" fault: the card really was declined (remembered by the processor)
        return await self._step(  # type: ignore[no-any-return]
            "provider.confirm",
            lambda fault: self._provider.confirm(payment_id, token, fault == "decline"),
        )

    async def retrieve(self, payment_id: str) -> Payment:
        return await self._step(  # type: ignore[no-any-return]
            "provider.retrieve", lambda fault: self._provider.retrieve(payment_id)
        )

    async def refund(self, payment_id: str, key: str, amount: int | None = None) -> str:
        return await self._step(  # type: ignore[no-any-return]
            "provider.refund", lambda fault: self._provider.refund(payment_id, key, amount)
        )

    async def charge(self, charge_id: str) -> ChargeState:
        return await self._step(  # type: ignore[no-any-return]
            "provider.charge", lambda fault: self._provider.charge(charge_id)
        )

    def event(self, payload: bytes, signature: str | None) -> Any:
        """A webhook delivery's verification: local, so no call and no fault."""
        return self._provider.event(payload, signature)


def _aiohttp_handler(
    services: Services,
) -> Callable[[str, dict[str, Any] | None, str, dict[str, str]], Awaitable[Any]]:
    """The local server's whole request path (middlewares, token check, Strawberry's aiohttp
    view) for one in-process request, without a socket, so the scheduler stays in charge."""
    import time
    from unittest import mock

    import jwt
    from aiohttp import streams
    from aiohttp.test_utils import make_mocked_request

    from handlers.server import make_app

    app = make_app(services)
    app.freeze()

    async def handle(
        body: str, claims: dict[str, Any] | None, path: str, extra: dict[str, str]
    ) -> Any:
        data = body.encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **extra}
        if claims is not None:
            token = jwt.encode(
                {**claims, "exp": int(time.time()) + 3600},
                services.settings.jwt_secret,
                algorithm="HS256",
            )
            headers["Authorization"] = f"Bearer {token}"
        payload = streams.StreamReader(
            mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop()
        )
        payload.feed_data(data)
        payload.feed_eof()
        request = make_mocked_request("POST", path, headers=headers, payload=payload, app=app)
        response = await app._handle(request)
        return {"statusCode": response.status, "body": response.text}

    return handle
