"""A local fake of the few Stripe endpoints LiveCoins uses, for the provider's tests.

An aiohttp app: PaymentIntents (create, confirm, retrieve), refunds, a charge with its refunds
and disputes as they are now (listed by charge, as since API version 2022-11-15 a Charge no
longer embeds its refunds), and the charge and refund lists (reconciliation), with Stripe's
idempotency keys (a repeat answers the first response;
the same key with other parameters is an idempotency error), Stripe's test payment methods
(`pm_card_visa` succeeds, `pm_card_chargeDeclined` is declined, `pm_card_threeDSecure2Required`
needs authentication), and faults on demand: a 500, a 429, a timeout before or after acting.
`event()` signs a webhook delivery the way Stripe does (`t=...,v1=HMAC-SHA256`).
`served()` runs it on a thread of its own, for callers in other processes (the local cloud's
functions).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

SECRET_KEY = "sk_test_livecoins"
WEBHOOK_SECRET = "whsec_livecoins_test"


@dataclass
class Fault:
    path: str  # a substring of the request path
    kind: str  # "500" | "429" | "timeout-before" | "timeout-after"
    times: int = 1


@dataclass
class StripeFake:
    delay: float = 1.5  # longer than the provider's read timeout in the tests
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_refunds_fail: bool = False  # refunds asked through the API fail at once (closed card)
    keys: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _n: int = 0

    def fail(self, path: str, kind: str, times: int = 1) -> None:
        self.faults.append(Fault(path, kind, times))

    def forget_keys(self) -> None:
        """Stripe forgets idempotency keys after 24 hours."""
        self.keys.clear()

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n:06d}"

    # --- the app ----------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/payment_intents", self._handle(self._create))
        app.router.add_post("/v1/payment_intents/{id}/confirm", self._handle(self._confirm))
        app.router.add_get("/v1/payment_intents/{id}", self._handle(self._retrieve))
        app.router.add_post("/v1/refunds", self._handle(self._refund))
        app.router.add_get("/v1/charges", self._handle(self._list_charges))
        app.router.add_get("/v1/charges/{id}", self._handle(self._retrieve_charge))
        app.router.add_get("/v1/refunds", self._handle(self._list_refunds))
        app.router.add_get("/v1/disputes", self._handle(self._list_disputes))
        return app

    def _handle(
        self, act: Callable[[web.Request, dict[str, str]], tuple[int, dict[str, Any]]]
    ) -> Any:
        async def handler(request: web.Request) -> web.Response:
            raw = await request.text()
            form = dict(parse_qsl(raw)) if request.method == "POST" else dict(request.query)
            key = request.headers.get("Idempotency-Key")
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "form": form,
                    "idempotency_key": key,
                    "authorization": request.headers.get("Authorization"),
                }
            )
            fault = next((f for f in self.faults if f.times and f.path in request.path), None)
            if fault:
                fault.times -= 1
                if fault.kind == "500":
                    return _error(500, "api_error", "boom")
                if fault.kind == "429":
                    return _error(429, "rate_limit_error", "slow down")
                if fault.kind == "timeout-before":
                    await asyncio.sleep(self.delay)
                    return _error(500, "api_error", "too late")
            if key is not None and key in self.keys:
                signature, status, body = self.keys[key]
                if signature != json.dumps(form, sort_keys=True):
                    return _error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters",
                    )
                answer = web.json_response(body, status=status)
                answer.headers["Idempotent-Replayed"] = "true"
                return answer
            status, body = act(request, form)
            if key is not None:
                self.keys[key] = (json.dumps(form, sort_keys=True), status, body)
            if fault and fault.kind == "timeout-after":
                await asyncio.sleep(self.delay)
            return web.json_response(body, status=status)

        return handler

    def _create(self, request: web.Request, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent_id = self._id("pi")
        metadata = {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")}
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(form["amount"]),
            "currency": form["currency"],
            "status": "requires_payment_method",
            "client_secret": f"{intent_id}_secret_x",
            "metadata": metadata,
            "latest_charge": None,
            "last_payment_error": None,
            "created": int(time.time()),
        }
        self.intents[intent_id] = intent
        return 200, intent

    def _confirm(self, request: web.Request, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _error_body(404, "invalid_request_error", "resource_missing", "No such intent")
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            return _error_body(
                400,
                "invalid_request_error",
                "payment_intent_unexpected_state",
                f"This PaymentIntent's status is {intent['status']}.",
            )
        method = form.get("payment_method", "")
        if method == "pm_card_visa":
            self._succeed(intent)
        elif method in ("pm_card_threeDSecure2Required", "pm_card_authenticationRequired"):
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk"}
        else:
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "code": "card_declined",
                "decline_code": "generic_decline",
            }
            error = _error_body(402, "card_error", "card_declined", "Your card was declined.")
            error[1]["error"].update(decline_code="generic_decline", payment_intent=dict(intent))
            return error
        return 200, dict(intent)

    def _succeed(self, intent: dict[str, Any]) -> None:
        charge_id = self._id("ch")
        self.charges[charge_id] = {
            "id": charge_id,
            "object": "charge",
            "amount": intent["amount"],
            "amount_refunded": 0,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "metadata": intent["metadata"],
            "refunded": False,
            "disputed": False,
            "status": "succeeded",
            "paid": True,
            "created": int(time.time()),
        }
        intent.update(status="succeeded", latest_charge=charge_id, last_payment_error=None)

    def authenticate(self, intent_id: str) -> dict[str, Any]:
        """The buyer finished 3-D Secure in the browser: the intent succeeds."""
        intent = self.intents[intent_id]
        self._succeed(intent)
        return dict(intent)

    def _retrieve(self, request: web.Request, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _error_body(404, "invalid_request_error", "resource_missing", "No such intent")
        return 200, dict(intent)

    def _refund(self, request: web.Request, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent = self.intents.get(form.get("payment_intent", ""))
        if intent is None or intent["status"] != "succeeded":
            return _error_body(400, "invalid_request_error", "charge_not_refundable", "No charge")
        charge = self.charges[intent["latest_charge"]]
        if any(
            not d["status"].startswith("warning_") and d["status"] != "won"
            for d in self.disputes.values()
            if d["charge"] == charge["id"]
        ):
            return _error_body(400, "invalid_request_error", "charge_disputed", "Disputed")
        left = charge["amount"] - charge["amount_refunded"]
        amount = int(form.get("amount", left))
        if left <= 0:
            return _error_body(
                400, "invalid_request_error", "charge_already_refunded", "Already refunded"
            )
        if amount > left:
            return _error_body(
                400,
                "invalid_request_error",
                "parameter_invalid_integer",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
            )
        refund = self.refund(charge["id"], amount)
        if self.api_refunds_fail:
            refund = self.fail_refund(refund["id"])
        return 200, refund

    def refund(self, charge_id: str, amount: int, status: str = "succeeded") -> dict[str, Any]:
        """A refund (through the API, or made in the dashboard); the charge's amount_refunded
        is cumulative, as Stripe's (a pending refund counts until it fails)."""
        charge = self.charges[charge_id]
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        refund = {
            "id": self._id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge_id,
            "payment_intent": charge["payment_intent"],
            "status": status,
            "created": int(time.time()),
        }
        self.refunds[refund["id"]] = refund
        return refund

    def fail_refund(self, refund_id: str) -> dict[str, Any]:
        """A refund that fails later (the card was closed): its money comes back to the
        platform, and Stripe sends charge.refund.updated with the refund."""
        refund = self.refunds[refund_id]
        if refund["status"] not in ("failed", "canceled"):
            refund["status"] = "failed"
            charge = self.charges[refund["charge"]]
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        return dict(refund)

    def _retrieve_charge(
        self, request: web.Request, form: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        charge = self.charges.get(request.match_info["id"])
        if charge is None:
            return _error_body(404, "invalid_request_error", "resource_missing", "No such charge")
        return 200, dict(charge)

    def _list_charges(
        self, request: web.Request, form: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        return 200, _listing("/v1/charges", self.charges.values(), form)

    def _list_refunds(
        self, request: web.Request, form: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        return 200, _listing("/v1/refunds", self.refunds.values(), form)

    def _list_disputes(
        self, request: web.Request, form: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        return 200, _listing("/v1/disputes", self.disputes.values(), form)

    # --- webhooks -----------------------------------------------------------------------
    def event(
        self, kind: str, obj: dict[str, Any], at: int | None = None, secret: str = WEBHOOK_SECRET
    ) -> tuple[bytes, str]:
        """A signed delivery of one event: (payload, Stripe-Signature header)."""
        stamp = int(time.time()) if at is None else at
        payload = json.dumps(
            {
                "id": self._id("evt"),
                "object": "event",
                "type": kind,
                "api_version": "2025-01-27",
                "created": stamp,
                "data": {"object": obj},
            }
        ).encode()
        mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256)
        return payload, f"t={stamp},v1={mac.hexdigest()}"

    def dispute(
        self, charge_id: str, status: str = "needs_response", amount: int | None = None
    ) -> dict[str, Any]:
        """A dispute opened by the buyer's bank: for the charge's amount unless `amount` says
        less. A dispute (not an inquiry, whose status starts with warning_) withdraws its
        amount from the platform's balance when it opens, as Stripe does for card disputes."""
        charge = self.charges[charge_id]
        charge["disputed"] = True
        dispute_id = f"dp_{charge_id}" + (
            f"_{len(self.disputes)}" if self._disputed(charge_id) else ""
        )
        disputed = charge["amount"] if amount is None else amount
        dispute = {
            "id": dispute_id,
            "object": "dispute",
            "charge": charge_id,
            "payment_intent": charge["payment_intent"],
            "amount": disputed,
            "currency": charge["currency"],
            "status": status,
            "is_charge_refundable": status.startswith("warning_"),
            "balance_transactions": []
            if status.startswith("warning_")
            else [{"id": self._id("txn"), "object": "balance_transaction", "amount": -disputed}],
            "created": int(time.time()),
        }
        self.disputes[dispute_id] = dispute
        return dict(dispute)

    def _disputed(self, charge_id: str) -> bool:
        return any(d["charge"] == charge_id for d in self.disputes.values())

    def update_dispute(self, dispute_id: str, status: str) -> dict[str, Any]:
        """The dispute moves on: an inquiry escalated (needs_response: funds withdrawn),
        closed (won: funds reinstated; lost; warning_closed)."""
        dispute = self.disputes[dispute_id]
        moved = dispute["balance_transactions"]
        net = -sum(bt["amount"] for bt in moved)
        if status in ("needs_response", "under_review", "lost") and net == 0:
            moved.append(
                {
                    "id": self._id("txn"),
                    "object": "balance_transaction",
                    "amount": -dispute["amount"],
                }
            )
        if status == "won" and net > 0:
            moved.append({"id": self._id("txn"), "object": "balance_transaction", "amount": net})
        dispute["status"] = status
        return dict(dispute)


def _listing(url: str, items: Any, form: dict[str, str]) -> dict[str, Any]:
    since = int(form.get("created[gte]", 0))
    until = int(form.get("created[lt]", 2**62))
    charge = form.get("charge")
    data = [
        dict(i)
        for i in items
        if since <= i["created"] < until and (charge is None or i.get("charge") == charge)
    ]
    return {"object": "list", "url": url, "has_more": False, "data": data}


def _error_body(status: int, kind: str, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"type": kind, "code": code, "message": message}}


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message}}, status=status)


@contextlib.contextmanager
def served(fake: StripeFake, host: str = "127.0.0.1") -> Iterator[str]:
    """`fake` on a free port of `host`, on its own thread and event loop: its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app(), access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, host, 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="stripe-fake", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.run_until_complete(runner.cleanup())
        loop.close()
