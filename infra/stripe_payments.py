"""Stripe, through its official library: PaymentIntents confirmed with the buyer's
PaymentMethod, refunds, and the signed webhook events (handlers/webhooks.py).

Imported only where the deployment names Stripe as its provider (the library takes about half
a second to import). Secrets come from the environment locally, and on AWS from a Secrets
Manager secret named by the template (`StripeSecretArn`), read once per process; never from
plain template parameters, never logged.

Every call carries an idempotency key; the library's own retries are off (`max_network_retries
= 0`) because ours are bounded by the request's deadline (resolvers/purchases.py). A network
error, a 5xx or a rate limit is `ProviderUnavailable`: the call may have acted, and it is asked
again with the same key.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import stripe

from infra.payments import (
    ACTION,
    DECLINED,
    PROCESSING,
    SUCCEEDED,
    ChargeState,
    Dispute,
    Payment,
    ProviderUnavailable,
    Refund,
    RefundRefused,
)

# Stripe's PaymentIntent statuses, as this project sees them.
_STATUS = {
    "succeeded": SUCCEEDED,
    "requires_action": ACTION,
    "processing": PROCESSING,
    "requires_payment_method": DECLINED,  # after a failed attempt: a new method is needed
    "canceled": DECLINED,
}
# Errors after which nothing definite is known: ask again with the same key.
_UNKNOWN = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)


class StripePaymentProvider:
    name = "stripe"

    def __init__(
        self,
        api_key: str,
        webhook_secret: str | None = None,
        api_base: str | None = None,
        timeout: tuple[float, float] = (2.0, 8.0),
    ) -> None:
        self.webhook_secret = webhook_secret
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    @classmethod
    def from_settings(cls, settings: Any) -> StripePaymentProvider:
        api_key, webhook_secret = settings.stripe_secret_key, settings.stripe_webhook_secret
        if settings.stripe_secret_arn:
            api_key, webhook_secret = _secret(settings.stripe_secret_arn, settings.region)
        if not api_key:
            raise ValueError(
                "LIVECOINS_PAYMENT_PROVIDER=stripe needs LIVECOINS_STRIPE_SECRET_KEY "
                "(or LIVECOINS_STRIPE_SECRET_ARN on AWS)"
            )
        return cls(api_key, webhook_secret, settings.stripe_api_base)

    async def _call(self, method: Any, params: dict[str, Any], key: str | None = None) -> Any:
        options = {"idempotency_key": key} if key else None
        try:
            return await asyncio.to_thread(method, params=params, options=options)
        except _UNKNOWN as error:
            raise ProviderUnavailable(f"stripe: {type(error).__name__}") from error

    async def create(
        self, *, amount: int, currency: str, key: str, metadata: dict[str, str]
    ) -> str:
        intent = await self._call(
            self.client.v1.payment_intents.create,
            {
                "amount": amount,
                "currency": currency.lower(),
                "metadata": metadata,
                "payment_method_types": ["card"],
            },
            key=f"{key}:create",
        )
        return str(intent.id)

    async def confirm(self, payment_id: str, token: str, key: str) -> Payment:
        try:
            intent = await self._call(
                lambda params, options: self.client.v1.payment_intents.confirm(
                    payment_id, params=params, options=options
                ),
                {"payment_method": token},
                key=f"{key}:confirm",
            )
        except stripe.CardError as error:
            # declined (or authentication required and refused): the intent says how
            intent = await self._retrieve(payment_id)
            payment = _payment(intent)
            code = getattr(error, "code", None)
            decline = (error.error.decline_code if error.error else None) or code
            return Payment(payment.id, DECLINED, payment.amount, payment.currency, None, decline)
        except stripe.InvalidRequestError as error:
            if getattr(error, "code", None) != "payment_intent_unexpected_state":
                raise
            intent = await self._retrieve(payment_id)  # confirmed before: its outcome
        return _payment(intent)

    async def _retrieve(self, payment_id: str) -> Any:
        return await self._call(
            lambda params, options: self.client.v1.payment_intents.retrieve(
                payment_id, params=params, options=options
            ),
            {},
        )

    async def retrieve(self, payment_id: str) -> Payment:
        return _payment(await self._retrieve(payment_id))

    async def refund(self, payment_id: str, key: str, amount: int | None = None) -> str:
        params: dict[str, Any] = {"payment_intent": payment_id}
        if amount is not None:
            params["amount"] = amount
        try:
            refund = await self._call(self.client.v1.refunds.create, params, key=key)
        except stripe.InvalidRequestError as error:
            raise RefundRefused(getattr(error, "code", None) or "refund refused") from error
        return str(refund.id)

    async def charge(self, charge_id: str) -> ChargeState:
        """The charge as Stripe holds it now, with every refund and dispute of it. Since API
        version 2022-11-15 a Charge no longer embeds its refunds: they are listed (and the
        disputes, when the charge says it was disputed). Three reads at most."""
        try:
            return await asyncio.to_thread(self._charge, charge_id)
        except _UNKNOWN as error:
            raise ProviderUnavailable(f"stripe: {type(error).__name__}") from error
        except stripe.InvalidRequestError as error:
            if getattr(error, "code", None) == "resource_missing":
                raise LookupError(f"stripe has no charge {charge_id}") from error
            raise

    def _charge(self, charge_id: str) -> ChargeState:
        charge = self.client.v1.charges.retrieve(charge_id).to_dict()
        refunds = self.client.v1.refunds.list(params={"charge": charge_id, "limit": 100})
        disputes: list[dict[str, Any]] = []
        if charge.get("disputed"):
            listed = self.client.v1.disputes.list(params={"charge": charge_id, "limit": 100})
            disputes = [d.to_dict() for d in listed.auto_paging_iter()]
        return ChargeState(
            id=charge["id"],
            amount=charge["amount"],
            currency=charge["currency"].upper(),
            status=charge.get("status", "succeeded"),
            payment_id=charge.get("payment_intent"),
            refunds=tuple(
                Refund(r["id"], r["amount"], r.get("status") or "succeeded")
                for r in (item.to_dict() for item in refunds.auto_paging_iter())
            ),
            disputes=tuple(
                Dispute(
                    d["id"],
                    d["amount"],
                    d["status"],
                    # funds withdrawn (negative) and reinstated (positive), net
                    -sum(bt.get("amount", 0) for bt in d.get("balance_transactions") or []),
                )
                for d in disputes
            ),
            metadata=tuple(sorted((charge.get("metadata") or {}).items())),
        )

    def event(self, payload: bytes, signature: str | None) -> Any:
        """The verified event of a webhook delivery, by the library's own check (the
        signature, and a timestamp within its 5-minute tolerance, so old deliveries cannot be
        replayed); ValueError when the delivery is not one."""
        if not self.webhook_secret:
            raise ValueError("no webhook secret configured (LIVECOINS_STRIPE_WEBHOOK_SECRET)")
        try:
            return stripe.Webhook.construct_event(payload, signature or "", self.webhook_secret)
        except stripe.SignatureVerificationError as error:
            raise ValueError("the Stripe-Signature does not verify") from error

    async def charges_between(self, since: int, until: int) -> list[dict[str, Any]]:
        """Every charge created in [since, until) (epoch seconds), for the audit."""
        return await self._listed(self.client.v1.charges.list, since, until)

    async def refunds_between(self, since: int, until: int) -> list[dict[str, Any]]:
        """Every refund created in [since, until), whatever its charge's age."""
        return await self._listed(self.client.v1.refunds.list, since, until)

    async def disputes_between(self, since: int, until: int) -> list[dict[str, Any]]:
        """Every dispute created in [since, until), whatever its charge's age."""
        return await self._listed(self.client.v1.disputes.list, since, until)

    async def _listed(self, method: Any, since: int, until: int) -> list[dict[str, Any]]:
        try:
            return await asyncio.to_thread(self._list, method, since, until)
        except _UNKNOWN as error:
            raise ProviderUnavailable(f"stripe: {type(error).__name__}") from error

    @staticmethod
    def _list(method: Any, since: int, until: int) -> list[dict[str, Any]]:
        page = method(params={"created": {"gte": since, "lt": until}, "limit": 100})
        return [item.to_dict() for item in page.auto_paging_iter()]


def _payment(intent: Any) -> Payment:
    status = _STATUS.get(intent.status, PROCESSING)
    error = getattr(intent, "last_payment_error", None)
    decline = (
        (getattr(error, "decline_code", None) or getattr(error, "code", None)) if error else None
    )
    return Payment(
        id=intent.id,
        status=status,
        amount=intent.amount,
        currency=intent.currency.upper(),
        charge_id=getattr(intent, "latest_charge", None) if status == SUCCEEDED else None,
        decline_code=decline if status == DECLINED else None,
        client_secret=intent.client_secret if status == ACTION else None,
        metadata=tuple(sorted(_plain(getattr(intent, "metadata", None)).items())),
    )


def _secret(arn: str, region: str) -> tuple[str, str | None]:
    """The Stripe keys from a Secrets Manager secret: {"apiKey": ..., "webhookSecret": ...}."""
    import boto3

    value = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=arn)
    secret = json.loads(value["SecretString"])
    return secret["apiKey"], secret.get("webhookSecret")


__all__ = ["RefundRefused", "StripePaymentProvider"]


def _plain(value: Any) -> dict[str, str]:
    """A StripeObject (not a dict since stripe 12) or None as a plain dict."""
    if value is None:
        return {}
    return {str(k): str(v) for k, v in value.to_dict().items()}
