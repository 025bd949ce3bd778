"""A local fake of the Stripe Connect endpoints LiveCoins pays creators through, shaped as Stripe
documents them, on the same server as the card payments' fake (tests/stripe_fake.py): a
deployment has one Stripe API address for both (LIVECOINS_STRIPE_API_BASE), so the local cloud
suite points both providers at one fake.

- Accounts v2 (`POST /v2/core/accounts`, `GET /v2/core/accounts/{id}?include[...]`): JSON bodies
  and answers, `include`d parts only when asked (null otherwise), the recipient configuration's
  `stripe_balance.stripe_transfers` and `payouts` capabilities with their `status_details`, and
  `requirements.entries` (`awaiting_action_from`, `minimum_deadline.status`, a machine-readable
  `description`; the names used here are illustrative).
- Account Links v2 (`POST /v2/core/account_links`): a single-use URL and its RFC 3339
  `expires_at`.
- Transfers v1 (`POST /v1/transfers`, list by `transfer_group` or `created`, retrieve) with
  `amount_reversed`, `reversed` and embedded `reversals`; transfer reversals
  (`POST`/`GET /v1/transfers/{id}/reversals`). A transfer to an account whose
  `stripe_transfers` capability is not active is refused (400
  `insufficient_capabilities_for_transfer`), one past the platform's available balance too
  (`balance_insufficient`), one to an unknown account is `resource_missing`.
- Idempotency as Stripe does it: the first answer under a key is saved, errors included, and
  replayed; the same key with other parameters is an `idempotency_error`. Faults on demand
  (`fail`): a 500, a 429, a timeout before or after acting.
- The processor's own acts: `complete_onboarding`, `require` (onboarding that stalls on what is
  due), `restrict` (payouts disabled mid-review), `reinstate`, `close`, `reverse`.
- The payouts endpoint's deliveries, signed with its own secret: `thin_event` (an event
  destination's thin payload: `v2.core.account[requirements].updated`, `v1.transfer.reversed`,
  naming the object only) and `event` (a classic endpoint's snapshot, e.g. `account.updated`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.stripe_fake import StripeFake, _error, _error_body, _listing

CONNECT_WEBHOOK_SECRET = "whsec_livecoins_connect_test"
ONBOARDING_DUE = (
    "identity.individual.dob",
    "identity.individual.verification.document",
    "configuration.recipient.default_outbound_destination",
)


def _rfc3339(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@dataclass
class StripeConnectFake(StripeFake):
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    balance: int = 10**9  # the platform's available balance, cents

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/v2/core/accounts", self._handle(self._create_account))
        app.router.add_get("/v2/core/accounts/{id}", self._handle(self._retrieve_account))
        app.router.add_post("/v2/core/account_links", self._handle(self._create_link))
        app.router.add_post("/v1/transfers", self._handle(self._create_transfer))
        app.router.add_get("/v1/transfers", self._handle(self._list_transfers))
        app.router.add_get("/v1/transfers/{id}", self._handle(self._retrieve_transfer))
        app.router.add_post("/v1/transfers/{id}/reversals", self._handle(self._create_reversal))
        app.router.add_get("/v1/transfers/{id}/reversals", self._handle(self._list_reversals))
        return app

    def _handle(
        self, act: Callable[[web.Request, dict[str, Any]], tuple[int, dict[str, Any]]]
    ) -> Any:
        """StripeFake's handler, with v2's JSON bodies (v1 posts forms)."""

        async def handler(request: web.Request) -> web.Response:
            raw = await request.text()
            if request.method != "POST":
                form: dict[str, Any] = dict(request.query)
            elif request.path.startswith("/v2/"):
                form = json.loads(raw or "{}")
            else:
                form = dict(parse_qsl(raw))
            key = request.headers.get("Idempotency-Key")
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "form": form,
                    "idempotency_key": key,
                    "authorization": request.headers.get("Authorization"),
                    "content_type": request.headers.get("Content-Type"),
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
            signature = json.dumps(form, sort_keys=True)
            if key is not None and key in self.keys:
                saved, status, body = self.keys[key]
                if saved != signature:
                    return _error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters",
                    )
                answer = web.json_response(body, status=status)
                answer.headers["Idempotent-Replayed"] = "true"
                return answer
            status, body = act(request, form)
            if key is not None and request.method == "POST":
                self.keys[key] = (signature, status, body)
            if fault and fault.kind == "timeout-after":
                await asyncio.sleep(self.delay)
            return web.json_response(body, status=status)

        return handler

    # --- accounts v2 -------------------------------------------------------------------
    def _create_account(
        self, request: web.Request, form: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        account_id = self._id("acct")
        requested = (
            form.get("configuration", {})
            .get("recipient", {})
            .get("capabilities", {})
            .get("stripe_balance", {})
            .get("stripe_transfers", {})
            .get("requested")
        )
        self.accounts[account_id] = {
            "id": account_id,
            "object": "v2.core.account",
            "applied_configurations": ["recipient"],
            "closed": False,
            "contact_email": form.get("contact_email"),
            "created": _rfc3339(time.time()),
            "dashboard": form.get("dashboard"),
            "display_name": form.get("display_name"),
            "livemode": False,
            "metadata": dict(form.get("metadata") or {}),
            "defaults": {"responsibilities": (form.get("defaults") or {}).get("responsibilities")},
            "identity": {"country": (form.get("identity") or {}).get("country")},
            "_transfers_requested": bool(requested),
        }
        self.require(account_id, ONBOARDING_DUE)
        return 200, self._account_view(account_id, form.get("include") or [])

    def _retrieve_account(
        self, request: web.Request, form: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        account_id = request.match_info["id"]
        if account_id not in self.accounts:
            return _error_body(404, "invalid_request_error", "resource_missing", "No such account")
        include = [v for k, v in request.query.items() if k.startswith("include")]
        return 200, self._account_view(account_id, include)

    def _account_view(self, account_id: str, include: list[str]) -> dict[str, Any]:
        stored = self.accounts[account_id]
        shown = {k: v for k, v in stored.items() if not k.startswith("_")}
        shown["configuration"] = (
            {"recipient": stored["_recipient"]} if "configuration.recipient" in include else None
        )
        shown["requirements"] = stored["_requirements"] if "requirements" in include else None
        return json.loads(json.dumps(shown))

    def _set(
        self,
        account_id: str,
        status: str,
        codes: tuple[str, ...],
        due: tuple[str, ...],
        deadline: str,
    ) -> None:
        account = self.accounts[account_id]
        details = [{"code": code, "resolution": "provide_info"} for code in codes]
        capability = {"status": status, "status_details": [] if status == "active" else details}
        account["_recipient"] = {
            "applied": True,
            "capabilities": {
                "stripe_balance": {
                    "stripe_transfers": dict(capability)
                    if account["_transfers_requested"]
                    else None,
                    "payouts": dict(capability),
                }
            },
        }
        account["_requirements"] = {
            "entries": [
                {
                    "awaiting_action_from": "user",
                    "description": name,
                    "errors": [],
                    "impact": {"restricts_capabilities": []},
                    "minimum_deadline": {"status": deadline},
                    "reference": None,
                    "requested_reasons": [{"code": "routine_onboarding"}],
                }
                for name in due
            ],
            "summary": {"minimum_deadline": {"status": deadline, "time": None} if due else None},
        }

    # the processor's own acts on accounts
    def require(self, account_id: str, due: tuple[str, ...] = ONBOARDING_DUE) -> None:
        """Onboarding not finished (or stalled): what the creator must still provide."""
        self._set(account_id, "restricted", ("requirements_past_due",), due, "currently_due")

    def complete_onboarding(self, account_id: str) -> None:
        """The creator finished the hosted onboarding and Stripe verified it."""
        self._set(account_id, "active", (), (), "eventually_due")

    def pending_verification(self, account_id: str) -> None:
        """Everything submitted; Stripe is still verifying it."""
        self._set(
            account_id, "pending", ("requirements_pending_verification",), (), "currently_due"
        )

    def restrict(self, account_id: str, code: str = "requirements_past_due") -> None:
        """Payouts disabled: information overdue (`requirements_past_due`) or a verification
        that failed (`rejected_...`)."""
        due = (
            ("identity.individual.verification.document",)
            if code == "requirements_past_due"
            else ()
        )
        self._set(account_id, "restricted", (code,), due, "past_due")

    def reinstate(self, account_id: str) -> None:
        self.complete_onboarding(account_id)

    def close(self, account_id: str) -> None:
        self.accounts[account_id]["closed"] = True
        self._set(account_id, "restricted", ("restricted_other",), (), "currently_due")

    # --- account links v2 ----------------------------------------------------------------
    def _create_link(
        self, request: web.Request, form: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        account_id = form.get("account", "")
        if account_id not in self.accounts:
            return _error_body(400, "invalid_request_error", "resource_missing", "No such account")
        onboarding = (form.get("use_case") or {}).get("account_onboarding") or {}
        link = {
            "object": "v2.core.account_link",
            "account": account_id,
            "created": _rfc3339(time.time()),
            "expires_at": _rfc3339(time.time() + 300),
            "livemode": False,
            "url": f"https://connect.stripe.com/setup/e/{account_id}/{self._id('link')}",
            "use_case": form.get("use_case"),
            "_return_url": onboarding.get("return_url"),
            "_refresh_url": onboarding.get("refresh_url"),
        }
        self.links.append(link)
        return 200, {k: v for k, v in link.items() if not k.startswith("_")}

    # --- transfers v1 --------------------------------------------------------------------
    def _create_transfer(
        self, request: web.Request, form: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        destination = form.get("destination", "")
        account = self.accounts.get(destination)
        if account is None:
            return _error_body(
                400,
                "invalid_request_error",
                "resource_missing",
                f"No such destination: '{destination}'",
            )
        capability = account["_recipient"]["capabilities"]["stripe_balance"]["stripe_transfers"]
        if account["closed"] or not capability or capability["status"] != "active":
            return _error_body(
                400,
                "invalid_request_error",
                "insufficient_capabilities_for_transfer",
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
            )
        amount = int(form["amount"])
        if amount > self.balance:
            return _error_body(
                400,
                "invalid_request_error",
                "balance_insufficient",
                "You have insufficient available funds in your Stripe account.",
            )
        self.balance -= amount
        transfer_id = self._id("tr")
        self.transfers[transfer_id] = {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "currency": form["currency"],
            "description": form.get("description"),
            "destination": destination,
            "destination_payment": self._id("py"),
            "livemode": False,
            "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "reversals": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/transfers/{transfer_id}/reversals",
            },
            "reversed": False,
            "source_transaction": None,
            "transfer_group": form.get("transfer_group"),
            "created": int(time.time()),
        }
        return 200, self._transfer_view(transfer_id)

    def _transfer_view(self, transfer_id: str) -> dict[str, Any]:
        return json.loads(json.dumps(self.transfers[transfer_id]))

    def _list_transfers(
        self, request: web.Request, form: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        group = form.get("transfer_group")
        listed = _listing("/v1/transfers", self.transfers.values(), form)
        if group is not None:
            listed["data"] = [t for t in listed["data"] if t.get("transfer_group") == group]
        return 200, listed

    def _retrieve_transfer(
        self, request: web.Request, form: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        transfer_id = request.match_info["id"]
        if transfer_id not in self.transfers:
            return _error_body(404, "invalid_request_error", "resource_missing", "No such transfer")
        return 200, self._transfer_view(transfer_id)

    def _create_reversal(
        self, request: web.Request, form: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        transfer_id = request.match_info["id"]
        if transfer_id not in self.transfers:
            return _error_body(404, "invalid_request_error", "resource_missing", "No such transfer")
        left = (
            self.transfers[transfer_id]["amount"] - self.transfers[transfer_id]["amount_reversed"]
        )
        amount = int(form.get("amount", left))
        if amount <= 0 or amount > left:
            return _error_body(
                400, "invalid_request_error", "parameter_invalid_integer", "Invalid amount"
            )
        return 200, self.reverse(transfer_id, amount)

    def _list_reversals(
        self, request: web.Request, form: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        transfer = self.transfers.get(request.match_info["id"])
        if transfer is None:
            return _error_body(404, "invalid_request_error", "resource_missing", "No such transfer")
        return 200, dict(transfer["reversals"])

    def reverse(self, transfer_id: str, amount: int) -> dict[str, Any]:
        """A reversal (by the platform, through the API or the dashboard): the money goes back
        from the creator's balance to the platform's; amount_reversed is cumulative."""
        transfer = self.transfers[transfer_id]
        amount = min(amount, transfer["amount"] - transfer["amount_reversed"])
        reversal = {
            "id": self._id("trr"),
            "object": "transfer_reversal",
            "amount": amount,
            "currency": transfer["currency"],
            "transfer": transfer_id,
            "metadata": {},
            "created": int(time.time()),
        }
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
        transfer["reversals"]["data"].insert(0, reversal)
        self.balance += amount
        return dict(reversal)

    # --- the payouts endpoint's deliveries ----------------------------------------------
    def thin_event(
        self,
        kind: str,
        object_id: str,
        at: int | None = None,
        secret: str = CONNECT_WEBHOOK_SECRET,
    ) -> tuple[bytes, str]:
        """A signed thin event of an event destination: the type and the object's id only."""
        stamp = int(time.time()) if at is None else at
        is_transfer = object_id.startswith("tr_")
        related = {
            "id": object_id,
            "type": "transfer" if is_transfer else "v2.core.account",
            "url": f"/v1/transfers/{object_id}"
            if is_transfer
            else f"/v2/core/accounts/{object_id}",
        }
        payload = json.dumps(
            {
                "id": self._id("evt"),
                "object": "v2.core.event",
                "type": kind,
                "created": _rfc3339(stamp),
                "livemode": False,
                "context": None if is_transfer else object_id,
                "related_object": related,
            }
        ).encode()
        return payload, _signature(payload, stamp, secret)

    def connect_event(
        self,
        kind: str,
        obj: dict[str, Any],
        at: int | None = None,
        secret: str = CONNECT_WEBHOOK_SECRET,
    ) -> tuple[bytes, str]:
        """A signed snapshot event of a classic endpoint, e.g. `account.updated`."""
        return self.event(kind, obj, at, secret)


def _signature(payload: bytes, stamp: int, secret: str) -> str:
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256)
    return f"t={stamp},v1={mac.hexdigest()}"


@contextlib.contextmanager
def served_apart(fake: StripeFake, host: str = "127.0.0.1") -> Iterator[str]:
    """`fake` on a free port, set up and run wholly on a thread of its own (callers that have an
    event loop running, such as Playwright's sync API, cannot set it up on theirs): its URL."""
    ready: queue.Queue[Any] = queue.Queue()
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(fake.app(), access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, host, 0)
        loop.run_until_complete(site.start())
        ready.put(runner.addresses[0][1])
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="stripe-connect-fake", daemon=True)
    thread.start()
    port = ready.get(timeout=10)
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
