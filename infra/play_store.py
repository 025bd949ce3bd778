"""Google Play, through the Android Publisher API (v3) by plain HTTP with `google-auth`:
`purchases.products.get`, `:consume`, `:acknowledge`, `purchases.voidedpurchases.list`, and the
real-time developer notifications Pub/Sub pushes to us (their OIDC token verified).

Why plain HTTP rather than `google-api-python-client`: four endpoints are used; the discovery
client brings httplib2 and a discovery document per API for them, and hides the HTTP status we
map to "definite" or "ask again". `google-auth`'s AuthorizedSession (requests underneath) gets
and refreshes the service account's access token (a JWT-bearer grant to the key's `token_uri`).

Errors: a 400/404/410 on a purchase is ReceiptInvalid(UNKNOWN) (the token is not one of this
app's purchases of this product); a network error, a timeout, a 5xx, a 408/409/429, or a
401/403 (our credentials or their permissions refused: a deployment error, never the buyer's)
is StoreUnavailable.

Imported only where a deployment sells on Google Play (infra.stores.play_store_from).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import google.auth.exceptions
import requests
from google.auth import jwt as google_jwt
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account

from infra.stores import (
    CANCELLED,
    FORGED,
    MALFORMED,
    PENDING,
    PLAY_STORE,
    PRODUCTION,
    PROMO,
    PURCHASED,
    REFUNDED,
    REWARDED,
    TEST,
    UNKNOWN,
    WRONG_APP,
    WRONG_PRODUCT,
    ReceiptInvalid,
    StoreNotification,
    StoreTransaction,
    StoreUnavailable,
    from_millis,
    play_transaction_id,
)

T = TypeVar("T")

PLAY_API = "https://androidpublisher.googleapis.com"
GOOGLE_CERTS = "https://www.googleapis.com/oauth2/v1/certs"  # {key id: PEM certificate}
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
ISSUERS = ("accounts.google.com", "https://accounts.google.com")

# StoreNotification.kind of a real-time developer notification
ONE_TIME_PURCHASED, ONE_TIME_CANCELED = "ONE_TIME_PURCHASED", "ONE_TIME_CANCELED"
VOIDED, TEST_NOTIFICATION, SUBSCRIPTION, OTHER = "VOIDED", "TEST", "SUBSCRIPTION", "OTHER"

_ENVIRONMENTS: dict[Any, str] = {None: PRODUCTION, 0: TEST, 1: PROMO, 2: REWARDED}
_VOIDED_SOURCES: dict[Any, str] = {0: "user", 1: "developer", 2: "google"}
_VOIDED_REASONS: dict[Any, str] = {
    0: "other",
    1: "remorse",
    2: "not_received",
    3: "defective",
    4: "accidental_purchase",
    5: "fraud",
    6: "friendly_fraud",
    7: "chargeback",
    8: "unacknowledged_purchase",
}
_ONE_TIME_KINDS: dict[Any, str] = {1: ONE_TIME_PURCHASED, 2: ONE_TIME_CANCELED}
_PRODUCT_TYPES: dict[Any, str] = {1: "subscription", 2: "one_time"}
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,2048}")
_PRODUCT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,149}")


@dataclass(frozen=True)
class VoidedPurchase:
    """One entry of the Voided Purchases API: a purchase refunded, cancelled or charged back,
    or (`voided_quantity` set) a quantity-based partial refund of a multi-quantity purchase.
    A purchase can be partly voided several times; when its last units are, the entry is a
    full one (`voided_quantity` None: the whole purchase is void)."""

    transaction_id: str
    purchase_token: str = field(repr=False)
    order_id: str | None
    purchased_at: datetime | None
    voided_at: datetime | None
    voided_quantity: int | None
    source: str | None  # user | developer | google
    reason: str | None  # remorse, chargeback, fraud, unacknowledged_purchase, ...

    @property
    def partial(self) -> bool:
        return self.voided_quantity is not None


@dataclass(frozen=True)
class VoidedPage:
    voided: list[VoidedPurchase]
    next_page_token: str | None


class PlayStore:
    """Reads and settles one app's Google Play purchases, and verifies its notifications."""

    def __init__(
        self,
        *,
        package_name: str,
        service_account_info: Mapping[str, Any],
        api_base: str = PLAY_API,
        push_audience: str | None = None,
        push_service_account: str | None = None,
        certs_url: str = GOOGLE_CERTS,
        timeout: tuple[float, float] = (2.0, 8.0),
        deadline: float = 10.0,
        certs_seconds: float = 3600.0,
    ) -> None:
        """`service_account_info`: the service account's key JSON (its `token_uri` is where the
        access tokens come from). `push_audience` / `push_service_account`: the audience and the
        service account email of the Pub/Sub push subscription (Authentication enabled);
        without them no push verifies. `deadline`: the most one call may take, whatever the
        libraries underneath do (google-auth retries a failing token endpoint by itself)."""
        self.package_name = package_name
        self.push_audience = push_audience
        self.push_service_account = push_service_account
        self.deadline = deadline
        self._base = f"{api_base.rstrip('/')}/androidpublisher/v3/applications/" + quote(
            package_name, safe=""
        )
        credentials = service_account.Credentials.from_service_account_info(
            dict(service_account_info), scopes=[SCOPE]
        )
        self._session = AuthorizedSession(credentials, refresh_timeout=timeout[1])
        self._timeout = timeout
        self._certs_url = certs_url
        self._certs_seconds = certs_seconds
        self._certs: tuple[float, dict[str, str]] = (0.0, {})
        self._certs_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> PlayStore:
        if settings.play_secret_arn:
            info = _secret(settings.play_secret_arn, settings.region)
        else:
            info = json.loads(settings.play_service_account)
        return cls(
            package_name=settings.play_package_name,
            service_account_info=info,
            api_base=settings.play_api_base or PLAY_API,
            push_audience=settings.play_push_audience,
            push_service_account=settings.play_push_service_account,
            certs_url=settings.play_certs_url or GOOGLE_CERTS,
            timeout=(2.0, settings.store_timeout_seconds),
            deadline=settings.store_timeout_seconds + 2.0,
        )

    # --- purchases ------------------------------------------------------------------------------
    async def purchase(self, product_id: str, purchase_token: str) -> StoreTransaction:
        """purchases.products.get: the purchase as Google says it is now (pending, purchased,
        partly or wholly refunded, cancelled; consumed or not). ReceiptInvalid: UNKNOWN (not a
        purchase of this product in this app), WRONG_PRODUCT, MALFORMED."""
        url = self._purchase_url(product_id, purchase_token)
        return await self._run(lambda: self._read(url, product_id, purchase_token))

    async def consume(self, product_id: str, purchase_token: str) -> None:
        """purchases.products.consume, idempotent from our side: returns once the purchase is
        consumed, by this call or an earlier one (Google answers an error to a second consume;
        the purchase's consumptionState then says it is done). ReceiptInvalid when it never
        will be (UNKNOWN, or REVOKED: cancelled or refunded); StoreUnavailable when not now
        (e.g. still pending)."""
        await self._settle(product_id, purchase_token, "consume", lambda p: bool(p.consumed))

    async def acknowledge(
        self, product_id: str, purchase_token: str, developer_payload: str | None = None
    ) -> None:
        """purchases.products.acknowledge, idempotent like `consume` (a consumed purchase is
        acknowledged too). Only needed to keep a purchase unconsumed beyond 3 days without
        Google refunding it; consuming acknowledges."""
        body = {"developerPayload": developer_payload} if developer_payload else {}
        await self._settle(
            product_id,
            purchase_token,
            "acknowledge",
            lambda p: bool(p.acknowledged or p.consumed),
            body,
        )

    async def _settle(
        self,
        product_id: str,
        purchase_token: str,
        action: str,
        done: Callable[[StoreTransaction], bool],
        body: dict[str, Any] | None = None,
    ) -> None:
        url = self._purchase_url(product_id, purchase_token)

        def settle() -> None:
            response = self._request("POST", f"{url}:{action}", json=body or {})
            if response.ok:
                return
            if response.status_code not in (400, 404, 410):
                raise _unavailable(response)
            purchase = self._read(url, product_id, purchase_token)  # why refused?
            if done(purchase):
                return
            purchase.ensure_not_revoked()
            raise StoreUnavailable(
                f"play: {action} refused while the purchase is {purchase.state} "
                f"({_message(response)})"
            )

        await self._run(settle)

    def _purchase_url(self, product_id: str, purchase_token: str) -> str:
        if not isinstance(product_id, str) or not _PRODUCT.fullmatch(product_id):
            raise ReceiptInvalid(MALFORMED, "not a Google Play product id")
        if not isinstance(purchase_token, str) or not _TOKEN.fullmatch(purchase_token):
            raise ReceiptInvalid(MALFORMED, "not a Google Play purchase token")
        return f"{self._base}/purchases/products/{product_id}/tokens/{purchase_token}"

    def _read(self, url: str, product_id: str, purchase_token: str) -> StoreTransaction:
        response = self._request("GET", url)
        if response.status_code in (400, 404, 410):
            raise ReceiptInvalid(UNKNOWN, f"play: HTTP {response.status_code} {_message(response)}")
        if not response.ok:
            raise _unavailable(response)
        return _purchase(_json(response), product_id, purchase_token)

    # --- voided purchases -----------------------------------------------------------------------
    async def voided_page(
        self,
        start: datetime,
        end: datetime | None = None,
        page_token: str | None = None,
        max_results: int = 1000,
    ) -> VoidedPage:
        """One page of purchases.voidedpurchases.list: one-time purchases (type=0) voided
        between `start` (at most 30 days back) and `end` (now if None), as Google's records of
        them became void, quantity-based partial refunds included
        (includeQuantityBasedPartialRefund=true). With `page_token`, the times are Google's
        from the first page."""
        params: dict[str, str] = {
            "type": "0",
            "includeQuantityBasedPartialRefund": "true",
            "maxResults": str(max_results),
        }
        if page_token:
            params["token"] = page_token
        else:
            params["startTime"] = str(int(start.timestamp() * 1000))
            if end is not None:
                params["endTime"] = str(int(end.timestamp() * 1000))
        url = f"{self._base}/purchases/voidedpurchases"

        def read() -> VoidedPage:
            response = self._request("GET", url, params=params)
            if not response.ok:
                if response.status_code == 400:  # a window Google refuses: our request's bug
                    raise ValueError(f"play: voidedpurchases refused: {_message(response)}")
                raise _unavailable(response)
            answer = _json(response)
            pagination = answer.get("tokenPagination") or {}
            return VoidedPage(
                [_voided(item) for item in answer.get("voidedPurchases") or []],
                pagination.get("nextPageToken") or None,
            )

        return await self._run(read)

    async def voided_purchases(
        self, start: datetime, end: datetime | None = None
    ) -> list[VoidedPurchase]:
        """Every page of `voided_page`."""
        voided: list[VoidedPurchase] = []
        token: str | None = None
        while True:
            page = await self.voided_page(start, end, token)
            voided.extend(page.voided)
            if not page.next_page_token:
                return voided
            token = page.next_page_token

    # --- real-time developer notifications ---------------------------------------------------
    async def verify_push(self, authorization: str | None, body: bytes) -> StoreNotification:
        """A Pub/Sub push delivery of a real-time developer notification, verified: the
        `Authorization: Bearer` OIDC token's signature (Google's certificates), issuer,
        audience, expiry and service account email, then the notification's package name.
        ReceiptInvalid(FORGED | WRONG_APP | MALFORMED); StoreUnavailable when Google's
        certificates cannot be fetched (answer the push with a 5xx: Pub/Sub delivers again)."""
        if not self.push_audience or not self.push_service_account:
            raise RuntimeError(
                "no push subscription configured (LIVECOINS_PLAY_PUSH_AUDIENCE and "
                "LIVECOINS_PLAY_PUSH_SERVICE_ACCOUNT)"
            )
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ReceiptInvalid(FORGED, "no bearer token")
        await self._run(lambda: self._verify_token(token.strip()))
        return self._notification(body)

    def _verify_token(self, token: str) -> None:
        try:
            header = google_jwt.decode_header(token)
        except (ValueError, google.auth.exceptions.GoogleAuthError) as error:
            raise ReceiptInvalid(FORGED, f"not a JWT: {error}") from error
        certs = self._google_certs(str(header.get("kid") or ""))
        try:
            claims = google_jwt.decode(
                token, certs=certs, audience=self.push_audience, clock_skew_in_seconds=10
            )
        except (ValueError, google.auth.exceptions.GoogleAuthError) as error:
            raise ReceiptInvalid(FORGED, f"the push token does not verify: {error}") from error
        if claims.get("iss") not in ISSUERS:
            raise ReceiptInvalid(FORGED, f"issuer {claims.get('iss')!r}")
        if claims.get("email") != self.push_service_account or claims.get("email_verified") not in (
            True,
            "true",
        ):
            raise ReceiptInvalid(FORGED, f"signed for {claims.get('email')!r}")

    def _google_certs(self, key_id: str) -> dict[str, str]:
        """Google's signing certificates, cached; fetched again when a token names a key the
        cache lacks (Google rotates them), at most once a minute."""
        with self._certs_lock:
            fetched_at, certs = self._certs
            age = time.monotonic() - fetched_at
            if certs and age < self._certs_seconds and (key_id in certs or age < 60):
                return certs
            try:
                response = requests.get(self._certs_url, timeout=self._timeout)
            except requests.RequestException as error:
                raise StoreUnavailable(f"play: Google's certificates: {error}") from error
            if not response.ok:
                raise StoreUnavailable(f"play: Google's certificates: HTTP {response.status_code}")
            certs = _json(response)
            self._certs = (time.monotonic(), certs)
            return certs

    def _notification(self, body: bytes) -> StoreNotification:
        try:
            push = json.loads(body)
            message = push["message"]
            data = json.loads(base64.b64decode(message["data"], validate=True))
            message_id = str(message.get("messageId") or message["message_id"])
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            raise ReceiptInvalid(MALFORMED, f"not a Pub/Sub push of a notification: {error}") from (
                error
            )
        if not isinstance(data, dict):
            raise ReceiptInvalid(MALFORMED, "the notification is not an object")
        if data.get("packageName") != self.package_name:
            raise ReceiptInvalid(WRONG_APP, f"package {data.get('packageName')!r}")
        common: dict[str, Any] = {
            "store": PLAY_STORE,
            "notification_id": message_id,
            "environment": None,
            "sent_at": from_millis(data.get("eventTimeMillis")),
        }
        if isinstance(one_time := data.get("oneTimeProductNotification"), dict):
            token = _string(one_time, "purchaseToken")
            kind = _ONE_TIME_KINDS.get(one_time.get("notificationType"), OTHER)
            return StoreNotification(
                **common,
                kind=kind,
                subtype=None,
                transaction_id=play_transaction_id(token),
                purchase_token=token,
                product_id=one_time.get("sku"),
            )
        if isinstance(voided := data.get("voidedPurchaseNotification"), dict):
            token = _string(voided, "purchaseToken")
            return StoreNotification(
                **common,
                kind=VOIDED,
                subtype=_PRODUCT_TYPES.get(voided.get("productType")),
                transaction_id=play_transaction_id(token),
                purchase_token=token,
                order_id=voided.get("orderId") or None,
                partial=voided.get("refundType") == 2,
            )
        if isinstance(data.get("testNotification"), dict):
            return StoreNotification(**common, kind=TEST_NOTIFICATION, subtype=None)
        if isinstance(data.get("subscriptionNotification"), dict):
            return StoreNotification(**common, kind=SUBSCRIPTION, subtype=None)
        return StoreNotification(**common, kind=OTHER, subtype=None)

    # --- plumbing -------------------------------------------------------------------------------
    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(method, url, timeout=self._timeout, **kwargs)
        except google.auth.exceptions.RefreshError as error:
            # the token endpoint refused our key (or kept failing): not the buyer's problem
            raise StoreUnavailable(f"play: no access token: {error}") from error
        except (requests.RequestException, google.auth.exceptions.TransportError) as error:
            raise StoreUnavailable(f"play: {type(error).__name__}") from error

    async def _run(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.wait_for(asyncio.to_thread(work), self.deadline)
        except TimeoutError as error:
            raise StoreUnavailable(f"play: no answer in {self.deadline:g} s") from error


def _purchase(item: dict[str, Any], product_id: str, purchase_token: str) -> StoreTransaction:
    if item.get("productId") not in (None, product_id):
        raise ReceiptInvalid(WRONG_PRODUCT, f"the token is for {item.get('productId')!r}")
    state = item.get("purchaseState")
    purchase_type = item.get("purchaseType")
    quantity = item.get("quantity", 1)
    refundable = item.get("refundableQuantity")
    if (
        state not in (0, 1, 2)
        or purchase_type not in _ENVIRONMENTS
        or not isinstance(quantity, int)
        or quantity < 1
        or not (refundable is None or isinstance(refundable, int))
    ):
        raise ReceiptInvalid(MALFORMED, f"purchase state {state!r}, quantity {quantity!r}")
    refunded = 0 if refundable is None else max(0, min(quantity, quantity - refundable))
    if state == 1:  # Canceled: never paid (a pending purchase abandoned), or voided whole
        status, refunded = CANCELLED, quantity
    elif state == 2:
        status = PENDING
    else:
        status = REFUNDED if refunded >= quantity else PURCHASED
    return StoreTransaction(
        store=PLAY_STORE,
        transaction_id=play_transaction_id(purchase_token),
        product_id=product_id,
        quantity=quantity,
        environment=_ENVIRONMENTS[purchase_type],
        state=status,
        purchased_at=from_millis(item.get("purchaseTimeMillis")),
        account_token=item.get("obfuscatedExternalAccountId") or None,
        refunded_quantity=refunded,
        order_id=item.get("orderId") or None,
        purchase_token=purchase_token,
        consumed=item.get("consumptionState") == 1,
        acknowledged=item.get("acknowledgementState") == 1,
        region=item.get("regionCode") or None,
    )


def _voided(item: dict[str, Any]) -> VoidedPurchase:
    token = _string(item, "purchaseToken")
    quantity = item.get("voidedQuantity")
    return VoidedPurchase(
        transaction_id=play_transaction_id(token),
        purchase_token=token,
        order_id=item.get("orderId") or None,
        purchased_at=from_millis(item.get("purchaseTimeMillis")),
        voided_at=from_millis(item.get("voidedTimeMillis")),
        voided_quantity=int(quantity) if quantity else None,
        source=_VOIDED_SOURCES.get(item.get("voidedSource", -1)),
        reason=_VOIDED_REASONS.get(item.get("voidedReason", -1)),
    )


def _string(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise ReceiptInvalid(MALFORMED, f"no {key}")
    return value


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError as error:
        raise StoreUnavailable(
            f"play: an answer that is not JSON (HTTP {response.status_code})"
        ) from (error)


def _message(response: requests.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or error.get("status") or "")[:200]
    except (ValueError, AttributeError):
        return response.text[:200]


def _unavailable(response: requests.Response) -> StoreUnavailable:
    """Anything but a definite refusal of the purchase: a 5xx, a 408/409/429, our credentials
    or their permissions refused (401/403), or an answer we do not expect."""
    return StoreUnavailable(f"play: HTTP {response.status_code} {_message(response)}")


def _secret(arn: str, region: str) -> dict[str, Any]:
    """The service account's key JSON, stored whole as a Secrets Manager secret."""
    import boto3

    value = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=arn)
    info: dict[str, Any] = json.loads(value["SecretString"])
    return info


__all__ = ["PlayStore", "VoidedPage", "VoidedPurchase"]
