"""Stripe Connect, through Stripe's official library: creators' connected accounts (Accounts v2,
the recipient configuration), their hosted onboarding (Account Links v2), transfers and their
reversals (v1 Transfers, which v2 accounts receive), and the payouts webhook endpoint's
signed notifications.

Why Accounts v2 (docs/aws.md "Paying creators"): Stripe's guidance for a new Connect
integration is the Accounts v2 API (`/v2/core/accounts`) unless told to use v1; its
*recipient* configuration is exactly a creator who is paid by transfer and never charges
anyone (`stripe_balance.stripe_transfers`, and `stripe_balance.payouts` to the bank), and v2
accounts take v1 transfers. Responsibilities and `dashboard` are v2's names for v1's
controller properties: the platform pays Stripe's fees and owns negative balances, creators get
the Express Dashboard, Stripe collects the requirements through its hosted onboarding.

Every call that creates carries an idempotency key; the library's own retries are off (ours
are bounded by the request's deadline, resolvers/payouts.py). A network error, a 5xx, a rate
limit or a request still running under the same key is `ProviderUnavailable`: the call may
have acted, and is asked again with the same key. Secrets: the API key is the platform's (the
Stripe secret of infra/stripe_payments.py unless the Connect secret names its own, e.g. a
restricted key); the payouts endpoint's signing secret is its own, from the environment locally
or the Secrets Manager secret template.yaml names (`StripeConnectSecretArn`), read once per
process, never logged.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, cast

import stripe

from infra.payouts import (
    ConnectedAccount,
    OnboardingLink,
    PayoutEvent,
    PayoutRefusal,
    ProviderUnavailable,
    Transfer,
)

# No definite answer: ask again with the same key. An IdempotencyError can only mean a request
# still running under the key: every key here is always sent with the same parameters.
_UNKNOWN = (
    stripe.APIConnectionError,
    stripe.RateLimitError,
    stripe.APIError,
    stripe.IdempotencyError,
)
# What an account is read with: its recipient capabilities and what is still due.
INCLUDE = ["configuration.recipient", "requirements"]
DUE = ("currently_due", "past_due")


class StripeConnectProvider:
    name = "stripe"

    def __init__(
        self,
        api_key: str,
        webhook_secret: str | None = None,
        api_base: str | None = None,
        timeout: tuple[float, float] = (2.0, 8.0),
        country: str = "US",
    ) -> None:
        self.webhook_secret = webhook_secret
        self.country = country
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    @classmethod
    def from_settings(cls, settings: Any) -> StripeConnectProvider:
        api_key = settings.stripe_connect_secret_key or settings.stripe_secret_key
        webhook_secret = settings.stripe_connect_webhook_secret
        if settings.stripe_connect_secret_arn:
            own_key, webhook_secret = _secret(settings.stripe_connect_secret_arn, settings.region)
            api_key = own_key or api_key
        if not api_key and settings.stripe_secret_arn:
            from infra.stripe_payments import _secret as payments_secret

            api_key, _ = payments_secret(settings.stripe_secret_arn, settings.region)
        if not api_key:
            raise ValueError(
                "LIVECOINS_PAYOUTS_PROVIDER=stripe needs the platform's Stripe key: "
                "LIVECOINS_STRIPE_SECRET_KEY (or LIVECOINS_STRIPE_SECRET_ARN on AWS)"
            )
        return cls(
            api_key, webhook_secret, settings.stripe_api_base, country=settings.payout_country
        )

    async def _call(self, call: Any) -> Any:
        try:
            return await asyncio.to_thread(call)
        except _UNKNOWN as error:
            raise ProviderUnavailable(f"stripe: {type(error).__name__}") from error
        except stripe.InvalidRequestError as error:
            if getattr(error, "code", None) == "resource_missing":
                raise LookupError(str(error)) from error
            raise

    # --- accounts ----------------------------------------------------------------------
    async def create_account(
        self, *, account_id: str, display_name: str, key: str
    ) -> ConnectedAccount:
        params: dict[str, Any] = {
            "display_name": display_name or account_id,
            "dashboard": "express",
            "identity": {"country": self.country.lower()},
            "configuration": {
                "recipient": {
                    "capabilities": {"stripe_balance": {"stripe_transfers": {"requested": True}}}
                }
            },
            "defaults": {
                "responsibilities": {
                    "fees_collector": "application",
                    "losses_collector": "application",
                }
            },
            "metadata": {"accountId": account_id},
            "include": INCLUDE,
        }
        account = await self._call(
            lambda: self.client.v2.core.accounts.create(
                params=cast(Any, params),
                options={"idempotency_key": key},
            )
        )
        return _account(_plain(account))

    async def account(self, connected_id: str) -> ConnectedAccount:
        account = await self._call(
            lambda: self.client.v2.core.accounts.retrieve(
                connected_id,
                params=cast(Any, {"include": INCLUDE}),
            )
        )
        return _account(_plain(account))

    async def onboarding_link(
        self, connected_id: str, *, return_url: str, refresh_url: str
    ) -> OnboardingLink:
        link = await self._call(
            lambda: self.client.v2.core.account_links.create(
                params={
                    "account": connected_id,
                    "use_case": {
                        "type": "account_onboarding",
                        "account_onboarding": {
                            "return_url": return_url,
                            "refresh_url": refresh_url,
                            # what is due later too, so onboarding is not asked for again soon
                            "collection_options": {"fields": "eventually_due"},
                        },
                    },
                }
            )
        )
        plain = _plain(link)
        return OnboardingLink(plain["url"], _seconds(plain["expires_at"]))

    # --- transfers -----------------------------------------------------------------------
    async def transfer(
        self, *, amount: int, currency: str, destination: str, withdrawal_id: str, key: str
    ) -> Transfer:
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": withdrawal_id,
            "description": f"LiveCoins withdrawal {withdrawal_id}",
            "metadata": {"withdrawalId": withdrawal_id},
        }
        try:
            created = await self._call(
                lambda: self.client.v1.transfers.create(
                    params=params,  # type: ignore[arg-type]
                    options={"idempotency_key": key},
                )
            )
        except LookupError as error:  # the destination account does not exist (any more)
            raise PayoutRefusal("account_invalid", str(error)) from error
        except (stripe.InvalidRequestError, stripe.PermissionError) as error:
            # refused before anything moved: no capability, the platform's balance too low, the
            # account closed or no longer connected
            code = getattr(error, "code", None) or type(error).__name__
            raise PayoutRefusal(code, getattr(error, "user_message", None) or str(error)) from error
        return _transfer(_plain(created))

    async def find_transfer(self, withdrawal_id: str) -> Transfer | None:
        listed = await self._call(
            lambda: self.client.v1.transfers.list(
                params={"transfer_group": withdrawal_id, "limit": 10}
            )
        )
        found = [_transfer(_plain(t)) for t in listed.data]
        found = [t for t in found if t.withdrawal_id in (withdrawal_id, None)]
        return min(found, key=lambda t: t.created) if found else None

    async def transfer_state(self, transfer_id: str) -> Transfer:
        return _transfer(
            _plain(await self._call(lambda: self.client.v1.transfers.retrieve(transfer_id)))
        )

    async def transfers_between(self, since: float, until: float) -> list[Transfer]:
        def listed() -> list[Transfer]:
            page = self.client.v1.transfers.list(
                params={"created": {"gte": int(since), "lt": int(until)}, "limit": 100}
            )
            return [_transfer(_plain(t)) for t in page.auto_paging_iter()]

        return await self._call(listed)

    # --- the payouts webhook endpoint ----------------------------------------------------
    def event(self, payload: bytes, signature: str | None) -> PayoutEvent:
        """A verified notification of the payouts endpoint: thin events of an event destination
        (`v2.core.account[...]`, `v1.transfer.reversed`: only the object's id) or snapshot
        events of a classic endpoint (`account.updated`, `transfer.reversed`). The signature
        and its 5-minute tolerance are checked by the library; ValueError when it does not."""
        if not self.webhook_secret:
            raise ValueError(
                "no payouts webhook secret configured (LIVECOINS_STRIPE_CONNECT_WEBHOOK_SECRET)"
            )
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"),
                signature or "",
                self.webhook_secret,
                stripe.Webhook.DEFAULT_TOLERANCE,  # older deliveries are replays
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError) as error:
            raise ValueError("the Stripe-Signature does not verify") from error
        return parse_event(payload)


def parse_event(payload: bytes) -> PayoutEvent:
    """A (verified) delivery's event id, type (without thin v1 events' "v1." prefix) and the id
    of the object it is about; ValueError when it names none."""
    try:
        body = json.loads(payload)
        related = body.get("related_object") or {}
        obj = (body.get("data") or {}).get("object") or {}
        object_id = related.get("id") or obj.get("id")
        kind = str(body["type"])
        return PayoutEvent(str(body["id"]), kind.removeprefix("v1."), str(object_id or ""))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError("not a Stripe event") from error


def _account(d: dict[str, Any]) -> ConnectedAccount:
    capabilities = ((d.get("configuration") or {}).get("recipient") or {}).get("capabilities") or {}
    balance = capabilities.get("stripe_balance") or {}
    transfers = balance.get("stripe_transfers") or {}
    payouts = balance.get("payouts") or {}
    reasons = tuple(
        sorted(
            {
                str(detail.get("code"))
                for capability in (transfers, payouts)
                for detail in capability.get("status_details") or []
                if detail.get("code")
            }
        )
    )
    entries = (d.get("requirements") or {}).get("entries") or []
    due = tuple(
        sorted(
            {
                str(entry.get("description"))
                for entry in entries
                if entry.get("awaiting_action_from") == "user"
                and (entry.get("minimum_deadline") or {}).get("status") in DUE
            }
        )
    )
    return ConnectedAccount(
        id=d["id"],
        transfers=transfers.get("status") or "pending",
        payouts=payouts.get("status"),
        reasons=reasons,
        requirements_due=due,
        closed=bool(d.get("closed")),
        account_id=(d.get("metadata") or {}).get("accountId"),
    )


def _transfer(d: dict[str, Any]) -> Transfer:
    return Transfer(
        id=d["id"],
        amount=int(d["amount"]),
        currency=str(d["currency"]).upper(),
        destination=d["destination"]
        if isinstance(d["destination"], str)
        else d["destination"]["id"],
        withdrawal_id=(d.get("metadata") or {}).get("withdrawalId"),
        reversed=int(d.get("amount_reversed") or 0),
        created=float(d.get("created") or 0),
    )


def _seconds(value: Any) -> float:
    """A v2 timestamp (RFC 3339) or a v1 one (epoch seconds) as epoch seconds."""
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _plain(value: Any) -> dict[str, Any]:
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def _secret(arn: str, region: str) -> tuple[str | None, str]:
    """The payouts endpoint's secret from Secrets Manager: {"webhookSecret": "whsec_...",
    "apiKey": "rk_live_..." (optional: else the Stripe secret's key)}."""
    import boto3

    value = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=arn)
    secret = json.loads(value["SecretString"])
    return secret.get("apiKey"), secret["webhookSecret"]


__all__ = ["StripeConnectProvider", "parse_event"]
