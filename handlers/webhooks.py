"""Webhooks, for the local server and the GraphQL Lambda alike: the payment processor's
(`POST /webhooks/stripe`) and the mobile stores' (`POST /webhooks/app-store`: App Store Server
Notifications V2; `POST /webhooks/play`: Google Play's real-time developer notifications by
Pub/Sub push). Each verifies the delivery, routes it and answers. The money rules are not here:
every notification only says *which* payment, charge or store transaction to look at again,
and resolvers/purchases.py or resolvers/store_purchases.py reads it as it is now
(resolvers/money_back.py converges to it).

- A delivery whose `Stripe-Signature` does not verify (forged, altered, or older than the
  library's 5-minute tolerance: a replay) is HTTP 400 and changes nothing.
- An event applied before (Stripe delivers at least once, retries for 3 days, and in no
  particular order) is remembered by its id for 30 days and answered 200 at once. Applying one
  twice, or two at once, or in any order, cannot change the outcome anyway: each reads the
  processor's state and converges to it.
- 2xx only once the purchase has converged to a state read after the event. A transient
  failure (DynamoDB busy past the request's retry budget, the processor not answering, a
  concurrent convergence still running) is 503 and a warning; an unexpected one is 500, logged
  with its stack trace but never shown. Stripe delivers both again, and every step resumes.

The stores' deliveries follow the same rules: a signed payload (Apple: the JWS chain to Apple's
root, bundle id, app Apple id, environment) or push token (Google: the OIDC token's signature,
issuer, audience and service account, then the package name) that does not verify is refused
and changes nothing (400; 401 for Google's token); a notification applied before (Apple's
notificationUUID, Pub/Sub's messageId) is answered 200 at once; 503 and 500 as above (Apple
retries 5 times over 3 days, Pub/Sub until the message's retention ends). A Google delivery
verified as our push subscription's but for another package is acknowledged and ignored, or
Pub/Sub would redeliver it for days.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from infra import stores
from infra.dynamo import Unavailable, start_request
from infra.payments import ProviderUnavailable
from infra.services import Services
from resolvers import purchases, store_purchases
from resolvers.errors import TryAgain

logger = logging.getLogger("livecoins")
Answer = tuple[int, dict[str, Any]]
# Events after which a charge's money may have moved: its refunds and disputes.
CHARGE_EVENTS = ("charge.refunded", "charge.refund.", "charge.dispute.", "refund.")


async def stripe_webhook(services: Services, payload: bytes, signature: str | None) -> Answer:
    provider = services.payments
    verify = getattr(provider, "event", None)
    if verify is None:
        return 404, {"error": "this deployment takes no Stripe payments"}
    try:
        event = verify(payload, signature)
    except ValueError as error:
        logger.warning("refused a webhook delivery: %s", error)
        return 400, {"error": "the delivery is not a valid, signed Stripe event"}
    start_request(services.settings.retry_budget_seconds)
    try:
        if await services.idempotency.seen_event(event.id):
            return 200, {"received": True, "duplicate": True}
        # the verified payload, as plain data (the library's objects are not dicts)
        await route(services, event.type, json.loads(payload)["data"]["object"])
        await services.idempotency.remember_event(event.id)
    except (TryAgain, Unavailable, ProviderUnavailable) as error:
        logger.warning("a webhook delivery to be retried: %r", error, extra={"event": event.id})
        return 503, {"error": "busy; deliver this event again"}
    except Exception:
        logger.exception("a webhook delivery failed", extra={"event": event.id})
        return 500, {"error": "Internal error."}
    logger.info("applied a Stripe event", extra={"event": event.id, "type": event.type})
    return 200, {"received": True}


async def route(services: Services, kind: str, obj: Any) -> None:
    """Which payment or charge the event is about; the rest is read from the processor."""
    if kind == "payment_intent.succeeded":
        await purchases.settle_payment(services, str(obj["id"]))
        return
    if kind.startswith(CHARGE_EVENTS):
        charge = obj.get("id") if obj.get("object") == "charge" else obj.get("charge")
        if isinstance(charge, dict):  # expanded
            charge = charge.get("id")
        if charge:
            await purchases.follow_charge(services, str(charge))
        return
    logger.info("ignored a Stripe event", extra={"type": kind})


async def app_store_webhook(services: Services, payload: bytes) -> Answer:
    """App Store Server Notifications V2: `{"signedPayload": "<JWS>"}`."""
    app = services.app_store
    if app is None:
        return 404, {"error": "this deployment sells no coins in the App Store"}
    try:
        signed = json.loads(payload)["signedPayload"]
        if not isinstance(signed, str):
            raise TypeError("signedPayload is not a string")
    except (ValueError, KeyError, TypeError) as error:
        logger.warning("refused an App Store delivery: %s", error)
        return 400, {"error": "the delivery is not an App Store Server Notification"}
    start_request(services.settings.retry_budget_seconds)
    try:
        note = await app.verify_notification(signed)
    except stores.ReceiptInvalid as error:
        logger.warning("refused an App Store delivery: %s", error.reason)
        return 400, {"error": "the delivery is not a valid, signed App Store notification"}
    except stores.StoreUnavailable as error:
        logger.warning("an App Store delivery to be retried: %r", error)
        return 503, {"error": "busy; deliver this notification again"}
    return await _apply(services, note)


async def play_webhook(services: Services, payload: bytes, authorization: str | None) -> Answer:
    """A Pub/Sub push of a Google Play real-time developer notification."""
    play = services.play_store
    if play is None:
        return 404, {"error": "this deployment sells no coins on Google Play"}
    start_request(services.settings.retry_budget_seconds)
    try:
        note = await play.verify_push(authorization, payload)
    except stores.ReceiptInvalid as error:
        logger.warning("refused a Google Play delivery: %s", error.reason)
        if error.reason == stores.FORGED:
            return 401, {"error": "the push is not from this deployment's subscription"}
        if error.reason == stores.WRONG_APP:  # ours, about another app: acknowledge it
            return 200, {"received": True, "ignored": "another package"}
        return 400, {"error": "the push is not a Google Play notification"}
    except stores.StoreUnavailable as error:
        logger.warning("a Google Play delivery to be retried: %r", error)
        return 503, {"error": "busy; deliver this notification again"}
    return await _apply(services, note)


async def _apply(services: Services, note: stores.StoreNotification) -> Answer:
    event = f"{note.store}#{note.notification_id}"
    try:
        if await services.idempotency.seen_event(event):
            return 200, {"received": True, "duplicate": True}
        await store_purchases.apply_notification(services, note)
        await services.idempotency.remember_event(event)
    except (TryAgain, Unavailable, stores.StoreUnavailable) as error:
        logger.warning("a store delivery to be retried: %r", error, extra={"event": event})
        return 503, {"error": "busy; deliver this notification again"}
    except Exception:
        logger.exception("a store delivery failed", extra={"event": event})
        return 500, {"error": "Internal error."}
    logger.info("applied a store notification", extra={"event": event, "type": note.kind})
    return 200, {"received": True}


async def connect_webhook(services: Services, payload: bytes, signature: str | None) -> Answer:
    """The payouts endpoint (`POST /webhooks/stripe-connect`): Stripe Connect's notifications,
    signed with a secret of their own (not the card payments endpoint's). With Stripe's event
    destinations one endpoint gets both the connected accounts' events (`v2.core.account[...]`,
    or a classic Connect endpoint's `account.updated`) and the platform's transfer events
    (`v1.transfer.reversed`, ...). Same rules as `stripe_webhook`: verified or 400; an event
    applied before answers 200 at once; 2xx only once the account or the withdrawal has
    converged to a state read after the event (resolvers/payouts.py); 503 on a transient
    failure, 500 on an unexpected one, and Stripe delivers both again."""
    from resolvers import payouts

    verify = getattr(services.payouts, "event", None)
    if verify is None:
        return 404, {"error": "this deployment pays no creators through Stripe"}
    try:
        event = verify(payload, signature)
    except ValueError as error:
        logger.warning("refused a payouts webhook delivery: %s", error)
        return 400, {"error": "the delivery is not a valid, signed Stripe event"}
    start_request(services.settings.retry_budget_seconds)
    try:
        if await services.idempotency.seen_event(event.id):
            return 200, {"received": True, "duplicate": True}
        await payouts.route(services, event)
        await services.idempotency.remember_event(event.id)
    except (TryAgain, Unavailable, ProviderUnavailable) as error:
        logger.warning("a payouts delivery to be retried: %r", error, extra={"event": event.id})
        return 503, {"error": "busy; deliver this event again"}
    except Exception:
        logger.exception("a payouts delivery failed", extra={"event": event.id})
        return 500, {"error": "Internal error."}
    logger.info("applied a payouts event", extra={"event": event.id, "type": event.type})
    return 200, {"received": True}


def body(answer: Answer) -> str:
    return json.dumps(answer[1])
