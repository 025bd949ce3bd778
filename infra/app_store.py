"""The App Store, through Apple's `app-store-server-library`: StoreKit 2 signed transactions and
App Store Server Notifications V2 verified (`SignedDataVerifier`), and the App Store Server API's
Get Transaction Info, Get Refund History and Get Notification History.

Verification: a signed transaction or notification is a JWS (ES256) whose `x5c` header carries
Apple's certificate chain; the library checks the chain up to the root certificates a
deployment configures (Apple's, from apple.com/certificateauthority; tests pass a root they
generate), the Apple-specific extensions of the leaf and the intermediate, the signature, the
bundle id, the app Apple id (notifications, in Production) and the environment. The Xcode and
LocalTesting environments skip the signature check in the library, so they are never accepted
here.

Environments: a production deployment verifies Production transactions, and Sandbox ones too
(App Review buys in the Sandbox against production servers; testers do): the transaction's
`environment` says which, and the caller allows Sandbox purchases to listed accounts only. A
sandbox deployment (a test stack) accepts Sandbox only. A transaction is verified by the verifier
of the environment it claims, so a claim is never trusted without Apple's signature.

The App Store Server API: JWT auth with an in-app purchase key (ES256, `kid`, issuer id, bundle
id); Production and Sandbox are two hosts. The library is synchronous: every call runs in a
worker thread, bounded by our timeouts. A network error, a timeout, a 5xx, a 429, a "retryable"
error code, or a 401/403 (our key refused: a deployment error, never the buyer's) is
`StoreUnavailable`.

Imported only where a deployment sells in the App Store (infra.stores.app_store_from).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import jwt
import requests
from appstoreserverlibrary.api_client import APIError, APIException, AppStoreServerAPIClient
from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.models.JWSTransactionDecodedPayload import (
    JWSTransactionDecodedPayload,
)
from appstoreserverlibrary.models.NotificationHistoryRequest import NotificationHistoryRequest
from appstoreserverlibrary.models.NotificationTypeV2 import NotificationTypeV2
from appstoreserverlibrary.signed_data_verifier import (
    SignedDataVerifier,
    VerificationException,
    VerificationStatus,
)
from cattrs.errors import BaseValidationError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from infra.stores import (
    APP_STORE,
    FORGED,
    MALFORMED,
    PRODUCTION,
    PURCHASED,
    REFUNDED,
    SANDBOX,
    UNKNOWN,
    WRONG_APP,
    WRONG_ENVIRONMENT,
    ReceiptInvalid,
    StoreNotification,
    StoreTransaction,
    StoreUnavailable,
    from_millis,
    minor_units,
)

T = TypeVar("T")

API_BASES = {
    PRODUCTION: "https://api.storekit.apple.com",
    SANDBOX: "https://api.storekit-sandbox.apple.com",
}
_APPLE = {PRODUCTION: Environment.PRODUCTION, SANDBOX: Environment.SANDBOX}
_OURS = {"Production": PRODUCTION, "Sandbox": SANDBOX}
_REFUSALS = {
    VerificationStatus.VERIFICATION_FAILURE: FORGED,
    VerificationStatus.INVALID_CERTIFICATE: FORGED,
    VerificationStatus.INVALID_CHAIN_LENGTH: FORGED,
    VerificationStatus.INVALID_CHAIN: FORGED,
    VerificationStatus.INVALID_APP_IDENTIFIER: WRONG_APP,
    VerificationStatus.INVALID_ENVIRONMENT: WRONG_ENVIRONMENT,
}
# Apple's "not found" answers: the transaction is not one of this app's in this environment.
_NOT_FOUND = {
    APIError.TRANSACTION_ID_NOT_FOUND,
    APIError.INVALID_TRANSACTION_ID,
    APIError.ORIGINAL_TRANSACTION_ID_NOT_FOUND,
    APIError.INVALID_ORIGINAL_TRANSACTION_ID,
}
_RETRYABLE = {
    APIError.ACCOUNT_NOT_FOUND_RETRYABLE,
    APIError.APP_NOT_FOUND_RETRYABLE,
    APIError.ORIGINAL_TRANSACTION_ID_NOT_FOUND_RETRYABLE,
    APIError.GENERAL_INTERNAL_RETRYABLE,
}
_REASONS: dict[Any, str] = {0: "other", 1: "app_issue"}
MAX_SIGNED_BYTES = 32 * 1024  # a signed transaction with its chain is about 4 KB


@dataclass(frozen=True)
class AppStoreKey:
    """An in-app purchase key from App Store Connect (Users and Access > Integrations)."""

    key_id: str
    issuer_id: str
    private_key: bytes = field(repr=False)  # the .p8 file's PEM


@dataclass(frozen=True)
class RefundPage:
    transactions: list[StoreTransaction]  # ascending by revocation date
    revision: str | None  # ask with it for the next page; keep the last one for next time
    has_more: bool


@dataclass(frozen=True)
class NotificationPage:
    notifications: list[StoreNotification]
    pagination_token: str | None
    has_more: bool


class _ApiClient(AppStoreServerAPIClient):
    """Apple's client, pointed at `base_url` with our timeouts and a kept-alive session.

    The library fixes the host by environment and a 30-second timeout, in private members set in
    its constructor (`_base_url`) and `_execute_request`, and takes neither as a parameter; this
    overrides just those two. The library is pinned exactly (requirements.txt) and the tests
    against the local fake fail if either moves."""

    def __init__(
        self,
        key: AppStoreKey,
        bundle_id: str,
        environment: Environment,
        base_url: str,
        timeout: tuple[float, float],
    ) -> None:
        super().__init__(key.private_key, key.key_id, key.issuer_id, bundle_id, environment)
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()

    def _execute_request(
        self,
        method: str,
        url: str,
        params: dict[str, str | list[str]],
        headers: dict[str, str],
        json: dict[str, Any] | None,
        data: bytes | None,
    ) -> requests.Response:
        return self._session.request(
            method,
            url,
            params=params,
            headers=headers,
            json=json,
            data=data,
            timeout=self._timeout,
        )


class AppStore:
    """Verifies the App Store's signed data and reads the App Store Server API."""

    def __init__(
        self,
        *,
        root_certificates: Sequence[bytes],
        bundle_id: str,
        app_apple_id: int | None,
        environment: str = PRODUCTION,
        online_checks: bool = False,
        key: AppStoreKey | None = None,
        api_bases: Mapping[str, str] | None = None,
        timeout: tuple[float, float] = (2.0, 8.0),
        deadline: float = 10.0,
    ) -> None:
        """`root_certificates`: DER bytes of the trusted roots (Apple Root CA - G3 in
        production). `environment`: PRODUCTION (accepts Production and Sandbox transactions)
        or SANDBOX (Sandbox only). `online_checks`: the library's OCSP revocation check of the
        chain on every verification (a request to Apple each time, cached 15 minutes per
        chain); off, the chain is checked as of the data's signedDate. `deadline`: the most one
        call may take, whatever the library does underneath."""
        if environment not in _APPLE:
            raise ValueError(f"environment must be {PRODUCTION} or {SANDBOX}, not {environment!r}")
        if not root_certificates:
            raise ValueError("no root certificates: nothing could verify")
        if environment == PRODUCTION and app_apple_id is None:
            raise ValueError("a production App Store needs the app's Apple id")
        self.bundle_id = bundle_id
        self.environment = environment
        self.environments = (PRODUCTION, SANDBOX) if environment == PRODUCTION else (SANDBOX,)
        self.deadline = deadline
        self._verifiers = {
            env: SignedDataVerifier(
                list(root_certificates), online_checks, _APPLE[env], bundle_id, app_apple_id
            )
            for env in self.environments
        }
        self._key = key
        self._bases = {**API_BASES, **(api_bases or {})}
        self._timeout = timeout
        self._clients: dict[str, _ApiClient] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> AppStore:
        key = None
        if settings.app_store_secret_arn:
            key = _secret(settings.app_store_secret_arn, settings.region)
        elif settings.app_store_private_key:
            key = AppStoreKey(
                settings.app_store_key_id or "",
                settings.app_store_issuer_id or "",
                settings.app_store_private_key.encode(),
            )
        bases = {
            env: base
            for env, base in (
                (PRODUCTION, settings.app_store_api_base),
                (SANDBOX, settings.app_store_sandbox_api_base),
            )
            if base
        }
        return cls(
            root_certificates=[load_certificate(p) for p in settings.app_store_root_certificates],
            bundle_id=settings.app_store_bundle_id,
            app_apple_id=settings.app_store_app_apple_id,
            environment=settings.app_store_environment,
            online_checks=settings.app_store_online_checks,
            key=key,
            api_bases=bases,
            timeout=(2.0, settings.store_timeout_seconds),
            deadline=settings.store_timeout_seconds + 2.0,
        )

    # --- signed data --------------------------------------------------------------------------
    async def verify_transaction(self, signed_transaction: str) -> StoreTransaction:
        """The transaction a StoreKit 2 `jwsRepresentation` (or any JWSTransaction) states, once
        verified. Raises ReceiptInvalid: FORGED, WRONG_APP, WRONG_ENVIRONMENT, MALFORMED."""
        return await self._run(lambda: self._transaction(signed_transaction))

    async def verify_notification(self, signed_payload: str) -> StoreNotification:
        """An App Store Server Notification V2 (the `signedPayload` of the POST body), once
        verified, with the transaction it carries verified too."""
        return await self._run(lambda: self._notification(signed_payload))

    def _verifier(self, claimed: Any) -> tuple[str, SignedDataVerifier]:
        environment = _OURS.get(claimed) if isinstance(claimed, str) else None
        verifier = self._verifiers.get(environment or "")
        if environment is None or verifier is None:
            raise ReceiptInvalid(
                WRONG_ENVIRONMENT,
                f"{claimed!r} is not an environment this deployment accepts "
                f"({', '.join(self.environments)})",
            )
        return environment, verifier

    def _transaction(self, signed: str) -> StoreTransaction:
        _, verifier = self._verifier(_claims(signed).get("environment"))
        payload = _verified(verifier.verify_and_decode_signed_transaction, signed)
        return _transaction(payload)

    def _notification(self, signed: str) -> StoreNotification:
        claims = _claims(signed)
        about = claims.get("data") or claims.get("summary") or claims.get("appData")
        claimed = about.get("environment") if isinstance(about, dict) else None
        environment, verifier = self._verifier(claimed)
        payload = _verified(verifier.verify_and_decode_notification, signed)
        if not payload.notificationUUID or not payload.rawNotificationType:
            raise ReceiptInvalid(MALFORMED, "a notification without its type or UUID")
        transaction = None
        if payload.data is not None and payload.data.signedTransactionInfo:
            transaction = self._transaction(payload.data.signedTransactionInfo)
        return StoreNotification(
            store=APP_STORE,
            notification_id=payload.notificationUUID,
            kind=payload.rawNotificationType,
            subtype=payload.rawSubtype,
            environment=environment,
            sent_at=from_millis(payload.signedDate),
            transaction=transaction,
            transaction_id=transaction.transaction_id if transaction else None,
            product_id=transaction.product_id if transaction else None,
        )

    # --- the App Store Server API ---------------------------------------------------------------
    async def transaction_info(
        self, transaction_id: str, environment: str = PRODUCTION
    ) -> StoreTransaction:
        """Get Transaction Info: the transaction as Apple says it is now (revoked or not),
        whatever the device sent. ReceiptInvalid(UNKNOWN) when Apple does not know it in that
        environment."""

        def call(client: _ApiClient) -> StoreTransaction:
            answer = client.get_transaction_info(transaction_id)
            if not answer.signedTransactionInfo:
                raise StoreUnavailable("app_store: an answer without signedTransactionInfo")
            return self._transaction(answer.signedTransactionInfo)

        return await self._api(environment, call)

    async def refund_history(
        self, transaction_id: str, environment: str = PRODUCTION, revision: str | None = None
    ) -> RefundPage:
        """One page (up to 20) of Get Refund History: every refunded in-app purchase of the
        customer who made `transaction_id`, consumables included, from `revision` on."""

        def call(client: _ApiClient) -> RefundPage:
            answer = client.get_refund_history(transaction_id, revision)
            return RefundPage(
                [self._transaction(signed) for signed in answer.signedTransactions or []],
                answer.revision,
                bool(answer.hasMore),
            )

        return await self._api(environment, call)

    async def refunds(
        self, transaction_id: str, environment: str = PRODUCTION, revision: str | None = None
    ) -> tuple[list[StoreTransaction], str | None]:
        """Every page of Get Refund History from `revision` on, and the last page's revision
        (keep it with the customer: asked with it later, Apple answers only newer refunds)."""
        refunded: list[StoreTransaction] = []
        while True:
            page = await self.refund_history(transaction_id, environment, revision)
            refunded.extend(page.transactions)
            revision = page.revision or revision
            if not page.has_more:
                return refunded, revision

    async def notification_history(
        self,
        start: datetime,
        end: datetime,
        *,
        environment: str = PRODUCTION,
        notification_type: str | None = None,
        transaction_id: str | None = None,
        only_failures: bool = False,
        pagination_token: str | None = None,
    ) -> NotificationPage:
        """One page (up to 20) of Get Notification History: the notifications Apple sent (or
        tried to) between `start` and `end` (at most 180 days back), each verified as a
        delivered one would be. Filter by `notification_type` or by `transaction_id` (the
        customer's), not both."""
        request = NotificationHistoryRequest(
            startDate=int(start.timestamp() * 1000),
            endDate=int(end.timestamp() * 1000),
            notificationType=NotificationTypeV2(notification_type) if notification_type else None,
            transactionId=transaction_id,
            onlyFailures=only_failures or None,
        )

        def call(client: _ApiClient) -> NotificationPage:
            answer = client.get_notification_history(pagination_token, request)
            return NotificationPage(
                [
                    self._notification(item.signedPayload)
                    for item in answer.notificationHistory or []
                    if item.signedPayload
                ],
                answer.paginationToken,
                bool(answer.hasMore),
            )

        return await self._api(environment, call)

    def _client(self, environment: str) -> _ApiClient:
        if self._key is None:
            raise RuntimeError(
                "no App Store in-app purchase key configured (LIVECOINS_APP_STORE_SECRET_ARN, "
                "or LIVECOINS_APP_STORE_KEY_ID, _ISSUER_ID and _PRIVATE_KEY)"
            )
        if environment not in self._verifiers:
            raise ReceiptInvalid(WRONG_ENVIRONMENT, f"{environment} is not accepted here")
        if environment not in self._clients:
            self._clients[environment] = _ApiClient(
                self._key,
                self.bundle_id,
                _APPLE[environment],
                self._bases[environment],
                self._timeout,
            )
        return self._clients[environment]

    async def _api(self, environment: str, call: Callable[[_ApiClient], T]) -> T:
        client = self._client(environment)
        try:
            return await self._run(lambda: call(client))
        except requests.RequestException as error:
            raise StoreUnavailable(f"app_store: {type(error).__name__}") from error
        except APIException as error:
            raise _api_error(error) from error

    async def _run(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.wait_for(asyncio.to_thread(work), self.deadline)
        except TimeoutError as error:
            raise StoreUnavailable(f"app_store: no answer in {self.deadline:g} s") from error


def _api_error(error: APIException) -> Exception:
    status, code = error.http_status_code, error.raw_api_error
    described = f"app_store: HTTP {status}" + (f" error {code}" if code else "")
    if error.error_message:
        described += f" ({error.error_message})"
    if status >= 500 or status in (401, 403, 429) or error.api_error in _RETRYABLE:
        return StoreUnavailable(described)
    if status == 404 or error.api_error in _NOT_FOUND:
        return ReceiptInvalid(UNKNOWN, described)
    # Any other 4xx is a request of ours Apple refuses (a bad revision, dates, filters): a bug.
    return ValueError(described)


def _claims(signed: Any) -> dict[str, Any]:
    """The JWS's payload, unverified: only to choose the verifier of the environment it claims
    (which then verifies everything, the environment included)."""
    if not isinstance(signed, str) or len(signed) > MAX_SIGNED_BYTES or signed.count(".") != 2:
        raise ReceiptInvalid(MALFORMED, "not a compact JWS")
    try:
        claims = jwt.decode(signed, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise ReceiptInvalid(MALFORMED, f"not a JWS: {error}") from error
    if not isinstance(claims, dict):
        raise ReceiptInvalid(MALFORMED, "the payload is not an object")
    return claims


def _verified(verify: Callable[[str], T], signed: str) -> T:
    try:
        return verify(signed)
    except VerificationException as error:
        if error.status == VerificationStatus.RETRYABLE_VERIFICATION_FAILURE:
            raise StoreUnavailable("app_store: the online certificate check got no answer") from (
                error
            )
        reason = _REFUSALS.get(error.status, FORGED)
        raise ReceiptInvalid(reason, error.status.name) from error
    except (BaseValidationError, ValueError, TypeError, KeyError, AttributeError) as error:
        # signed by Apple but not of the shape the library knows (cattrs' errors are these)
        raise ReceiptInvalid(MALFORMED, f"{type(error).__name__}: {error}") from error


def _transaction(payload: JWSTransactionDecodedPayload) -> StoreTransaction:
    if not payload.transactionId or not payload.productId:
        raise ReceiptInvalid(MALFORMED, "a transaction without its id or product id")
    quantity = payload.quantity if payload.quantity is not None else 1
    if quantity < 1:
        raise ReceiptInvalid(MALFORMED, f"quantity {quantity}")
    revoked = payload.revocationDate is not None
    prorated = payload.rawRevocationType == "REFUND_PRORATED"
    reason = _REASONS.get(payload.rawRevocationReason) if revoked else None
    if payload.rawRevocationType == "FAMILY_REVOKE":
        reason = "family_revoke"
    price = None
    if payload.price is not None and payload.currency:
        price = minor_units(payload.price, payload.currency)
    return StoreTransaction(
        store=APP_STORE,
        transaction_id=payload.transactionId,
        product_id=payload.productId,
        quantity=quantity,
        environment=_OURS.get(payload.rawEnvironment or "", payload.rawEnvironment or ""),
        state=REFUNDED if revoked else PURCHASED,
        purchased_at=from_millis(payload.purchaseDate),
        account_token=payload.appAccountToken.lower() if payload.appAccountToken else None,
        price=price,
        currency=payload.currency.upper() if price is not None and payload.currency else None,
        refunded_quantity=quantity if revoked and not prorated else 0,
        refunded_share_millipercent=payload.revocationPercentage if revoked and prorated else None,
        revoked_at=from_millis(payload.revocationDate),
        revocation_reason=reason,
        original_transaction_id=payload.originalTransactionId,
        product_type=payload.rawType,
        region=payload.storefront,
    )


def load_certificate(path: str) -> bytes:
    """A root certificate file (DER as Apple publishes it, or PEM) as DER bytes."""
    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)


def _secret(arn: str, region: str) -> AppStoreKey:
    """The in-app purchase key from a Secrets Manager secret:
    {"keyId": ..., "issuerId": ..., "privateKey": "-----BEGIN PRIVATE KEY-----..."}."""
    import boto3

    value = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=arn)
    secret = json.loads(value["SecretString"])
    return AppStoreKey(secret["keyId"], secret["issuerId"], secret["privateKey"].encode())


__all__ = ["AppStore", "AppStoreKey", "NotificationPage", "RefundPage"]
