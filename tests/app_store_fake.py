"""A local fake of the App Store, for the store tests: Apple's signing, and the App Store Server
API endpoints LiveCoins calls.

Signing as Apple does: a root CA (P-384, self-signed) -> an intermediate CA (P-384, with Apple's
WWDR intermediate marker extension 1.2.840.113635.100.6.2.1) -> a leaf (P-256, with Apple's
receipt-signing marker 1.2.840.113635.100.6.11.1); every signed object is a compact JWS, ES256,
whose header is `{"alg": "ES256", "x5c": [leaf, intermediate, root]}` (base64 DER, no `typ`).
Tests trust `fake.chain.root_der` as Apple's library trusts Apple's root. `make_chain` makes other
chains (an unknown root, a leaf without the marker, an expired leaf) to sign forgeries with.

The purchases: `buy` makes a consumable transaction (Production or Sandbox, with a price in
milliunits and a currency, an appAccountToken, a customer); `signed_transaction` is what
StoreKit 2 hands the app (`jwsRepresentation`), with overrides for forgeries; `refund` and
`reverse_refund` change Apple's record and return the signed REFUND / REFUND_REVERSED
notification (`deliver` wraps one as Apple POSTs it); `notify` sends any other type.

The App Store Server API, one app per environment (`fake.app("Production")`, the Sandbox host is
another): Get Transaction Info, Get Refund History (v2, pages of `page_size` ascending by
revocation date, an opaque `revision`), Get Notification History (pages, filters, 180 days).
Each request's bearer JWT is checked as Apple documents: ES256 signed by the in-app purchase key
(`kid`), `iss` the issuer id, `aud` "appstoreconnect-v1", `bid` the bundle id, expiring within
an hour; anything else is a 401. Faults on demand: a 500, a 429, a timeout before or after
acting (`fail`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BUNDLE_ID = "com.livecoins.app"
APP_APPLE_ID = 1234567890
KEY_ID = "LCTESTKEY1"
ISSUER_ID = "57246542-96fe-1a63-e053-0824d011072a"
LEAF_MARKER = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
INTERMEDIATE_MARKER = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
DAY = 24 * 3600


@dataclass
class Chain:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def root_der(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.DER)

    @property
    def x5c(self) -> list[str]:
        return [
            base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
            for cert in (self.leaf, self.intermediate, self.root)
        ]


def make_chain(
    name: str = "Fake Apple",
    *,
    leaf_marker: bool = True,
    intermediate_marker: bool = True,
    leaf_not_after: dt.datetime | None = None,
) -> Chain:
    """A root -> intermediate -> leaf chain shaped like Apple's (OpenSSL's strict checks pass:
    CA constraints and key usages critical, key identifiers on every certificate)."""
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP384R1())
    intermediate_key = ec.generate_private_key(ec.SECP384R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())

    def cert(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Certificate | None,
        issuer_key: ec.EllipticCurvePrivateKey,
        ca: bool,
        marker: x509.ObjectIdentifier | None,
        not_after: dt.datetime,
    ) -> x509.Certificate:
        subject_name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, subject),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject_name)
            .issuer_name(issuer.subject if issuer else subject_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(not_after)
            .add_extension(
                x509.BasicConstraints(ca=ca, path_length=0 if ca and issuer else None), True
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=ca,
                    crl_sign=ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        if marker is not None:
            builder = builder.add_extension(x509.UnrecognizedExtension(marker, b"\x05\x00"), False)
        return builder.sign(issuer_key, hashes.SHA384() if ca or issuer else hashes.SHA256())

    year = now + dt.timedelta(days=365)
    root = cert(f"{name} Root CA - G3", root_key, None, root_key, True, None, year)
    intermediate = cert(
        f"{name} WWDR Certification Authority",
        intermediate_key,
        root,
        root_key,
        True,
        INTERMEDIATE_MARKER if intermediate_marker else None,
        year,
    )
    leaf = cert(
        f"{name} Prod ECC App Store Receipt Signing",
        leaf_key,
        intermediate,
        intermediate_key,
        False,
        LEAF_MARKER if leaf_marker else None,
        leaf_not_after or year,
    )
    return Chain(root, intermediate, leaf, leaf_key)


@dataclass
class Fault:
    path: str  # a substring of the request path
    kind: str  # "500" | "429" | "timeout-before" | "timeout-after"
    times: int = 1


@dataclass
class Sent:
    """A notification Apple sent (or tried to), as Get Notification History keeps it."""

    environment: str
    kind: str
    subtype: str | None
    transaction_id: str | None
    signed_payload: str
    sent_at: int  # ms
    delivered: bool


def _ms(at: float | None = None) -> int:
    return int((time.time() if at is None else at) * 1000)


@dataclass
class AppStoreFake:
    bundle_id: str = BUNDLE_ID
    app_apple_id: int = APP_APPLE_ID
    key_id: str = KEY_ID
    issuer_id: str = ISSUER_ID
    delay: float = 1.5  # longer than the client's read timeout in the tests
    page_size: int = 20
    chain: Chain = field(default_factory=make_chain)
    # what the API's answers are signed with when not the chain (a man in the middle)
    api_chain: Chain | None = None
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    api_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()), repr=False
    )
    _n: int = 2000000000

    def fail(self, path: str, kind: str, times: int = 1) -> None:
        self.faults.append(Fault(path, kind, times))

    @property
    def private_key_pem(self) -> bytes:
        """The in-app purchase key as App Store Connect hands it out (a .p8: PKCS#8 PEM)."""
        return self.api_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    # --- purchases ------------------------------------------------------------------------------
    def buy(
        self,
        product_id: str,
        *,
        quantity: int = 1,
        price: int = 4990,
        currency: str = "USD",
        environment: str = "Production",
        account_token: str | None = None,
        customer: str = "customer-1",
        at: float | None = None,
    ) -> str:
        """A consumable bought: its transactionId. `price` in milliunits, for the quantity."""
        self._n += 1
        transaction_id = str(self._n)
        purchased = _ms(at)
        payload: dict[str, Any] = {
            "transactionId": transaction_id,
            "originalTransactionId": transaction_id,
            "bundleId": self.bundle_id,
            "productId": product_id,
            "purchaseDate": purchased,
            "originalPurchaseDate": purchased,
            "quantity": quantity,
            "type": "Consumable",
            "inAppOwnershipType": "PURCHASED",
            "environment": environment,
            "transactionReason": "PURCHASE",
            "storefront": "USA",
            "storefrontId": "143441",
            "price": price,
            "currency": currency,
            "appTransactionId": f"70{self._n}",
        }
        if account_token:
            payload["appAccountToken"] = account_token
        self.transactions[transaction_id] = payload
        self.customers[transaction_id] = customer
        return transaction_id

    def signed_transaction(
        self, transaction_id: str, *, chain: Chain | None = None, **overrides: Any
    ) -> str:
        """The transaction's JWS as Apple signs it now; `overrides` change (or, with None,
        remove) payload fields, to forge (a wrong bundleId, another environment)."""
        payload = {**self.transactions[transaction_id], "signedDate": _ms()}
        for key, value in overrides.items():
            if value is None:
                payload.pop(key, None)
            else:
                payload[key] = value
        return self.sign(payload, chain)

    def sign(self, payload: dict[str, Any], chain: Chain | None = None) -> str:
        chain = chain or self.chain
        return jwt.encode(
            payload, chain.leaf_key, algorithm="ES256", headers={"x5c": chain.x5c, "typ": None}
        )

    def refund(
        self,
        transaction_id: str,
        *,
        reason: int = 0,
        at: float | None = None,
        prorated_millipercent: int | None = None,
        delivered: bool = True,
    ) -> str:
        """Apple refunds the transaction: its record is revoked, and the signed REFUND
        notification is returned (and kept for Get Notification History)."""
        record = self.transactions[transaction_id]
        record.update(revocationDate=_ms(at), revocationReason=reason)
        if prorated_millipercent is None:
            record["revocationType"] = "REFUND_FULL"
        else:
            record.update(
                revocationType="REFUND_PRORATED", revocationPercentage=prorated_millipercent
            )
        return self.notify("REFUND", transaction_id, delivered=delivered)

    def reverse_refund(self, transaction_id: str, *, delivered: bool = True) -> str:
        record = self.transactions[transaction_id]
        for key in ("revocationDate", "revocationReason", "revocationType", "revocationPercentage"):
            record.pop(key, None)
        return self.notify("REFUND_REVERSED", transaction_id, delivered=delivered)

    def notify(
        self,
        kind: str,
        transaction_id: str | None = None,
        *,
        subtype: str | None = None,
        environment: str | None = None,
        chain: Chain | None = None,
        delivered: bool = True,
        **data: Any,
    ) -> str:
        """A signed App Store Server Notification V2 (its signedPayload)."""
        record = self.transactions.get(transaction_id or "")
        environment = environment or (record["environment"] if record else "Production")
        body: dict[str, Any] = {
            "appAppleId": self.app_apple_id,
            "bundleId": self.bundle_id,
            "bundleVersion": "1.0",
            "environment": environment,
            **data,
        }
        if transaction_id:
            body["signedTransactionInfo"] = self.signed_transaction(transaction_id, chain=chain)
        payload: dict[str, Any] = {
            "notificationType": kind,
            "notificationUUID": str(uuid.uuid4()),
            "data": body,
            "version": "2.0",
            "signedDate": _ms(),
        }
        if subtype:
            payload["subtype"] = subtype
        signed = self.sign(payload, chain)
        self.sent.append(
            Sent(
                environment, kind, subtype, transaction_id, signed, payload["signedDate"], delivered
            )
        )
        return signed

    @staticmethod
    def deliver(signed_payload: str) -> bytes:
        """The body Apple POSTs to the notification URL."""
        return json.dumps({"signedPayload": signed_payload}).encode()

    # --- the App Store Server API ---------------------------------------------------------------
    def app(self, environment: str = "Production") -> web.Application:
        app = web.Application()
        app.router.add_get(
            "/inApps/v1/transactions/{id}", self._handle(environment, self._transaction_info)
        )
        app.router.add_get(
            "/inApps/v2/refund/lookup/{id}", self._handle(environment, self._refund_history)
        )
        app.router.add_post(
            "/inApps/v1/notifications/history",
            self._handle(environment, self._notification_history),
        )
        return app

    def _handle(
        self,
        environment: str,
        act: Callable[[str, web.Request, dict[str, Any]], tuple[int, dict[str, Any]]],
    ) -> Any:
        async def handler(request: web.Request) -> web.Response:
            raw = await request.read()
            body = json.loads(raw) if raw else {}
            self.requests.append(
                {
                    "environment": environment,
                    "method": request.method,
                    "path": request.path,
                    "query": dict(request.query),
                    "body": body,
                    "authorization": request.headers.get("Authorization"),
                }
            )
            fault = next((f for f in self.faults if f.times and f.path in request.path), None)
            if fault:
                fault.times -= 1
                if fault.kind == "500":
                    return _error(500, 5000000, "An unknown error occurred.")
                if fault.kind == "429":
                    return _error(429, 4290000, "Rate limit exceeded.")
                if fault.kind == "timeout-before":
                    await asyncio.sleep(self.delay)
                    return _error(500, 5000000, "too late")
            problem = self._unauthorized(request.headers.get("Authorization", ""))
            if problem:
                return web.Response(status=401, text=f"Unauthenticated: {problem}")
            status, answer = act(environment, request, body)
            if fault and fault.kind == "timeout-after":
                await asyncio.sleep(self.delay)
            return _json(status, answer)

        return handler

    def _unauthorized(self, authorization: str) -> str | None:
        """Apple's documented checks of the API's bearer JWT; the reason it fails, or None."""
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            return "no bearer token"
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
                return f"header {header}"
            claims = jwt.decode(
                token,
                self.api_key.public_key(),
                algorithms=["ES256"],
                audience="appstoreconnect-v1",
                issuer=self.issuer_id,
                options={"require": ["exp", "iss", "aud", "bid"]},
            )
        except jwt.PyJWTError as error:
            return str(error)
        if claims["bid"] != self.bundle_id:
            return f"bid {claims['bid']}"
        if claims["exp"] - claims.get("iat", time.time()) > 3600 + 5:
            return "expires more than an hour after issue"
        return None

    def _visible(self, environment: str, transaction_id: str) -> dict[str, Any] | None:
        record = self.transactions.get(transaction_id)
        return record if record and record["environment"] == environment else None

    def _transaction_info(
        self, environment: str, request: web.Request, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        transaction_id = request.match_info["id"]
        if not self._visible(environment, transaction_id):
            return _not_found()
        signed = self.signed_transaction(transaction_id, chain=self.api_chain)
        return 200, {"signedTransactionInfo": signed}

    def _refund_history(
        self, environment: str, request: web.Request, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        transaction_id = request.match_info["id"]
        if not self._visible(environment, transaction_id):
            return _not_found()
        customer = self.customers[transaction_id]
        after: list[Any] = [0, ""]
        if "revision" in request.query:
            try:
                after = json.loads(base64.urlsafe_b64decode(request.query["revision"]))
            except ValueError:
                return 400, {"errorCode": 4000005, "errorMessage": "Invalid request revision."}
        refunded = sorted(
            (
                (t["revocationDate"], tid)
                for tid, t in self.transactions.items()
                if self.customers[tid] == customer
                and t["environment"] == environment
                and "revocationDate" in t
            ),
        )
        later = [key for key in refunded if list(key) > after]
        page = later[: self.page_size]
        cursor = list(page[-1]) if page else after
        revision = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
        return 200, {
            "signedTransactions": [
                self.signed_transaction(tid, chain=self.api_chain) for _, tid in page
            ],
            "revision": revision,
            "hasMore": len(later) > len(page),
        }

    def _notification_history(
        self, environment: str, request: web.Request, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        now = _ms()
        start, end = body.get("startDate"), body.get("endDate")
        if not isinstance(start, int):
            return 400, {"errorCode": 4000015, "errorMessage": "Invalid start date."}
        if not isinstance(end, int):
            return 400, {"errorCode": 4000016, "errorMessage": "Invalid end date."}
        if start < now - 180 * DAY * 1000:
            return 400, {"errorCode": 4000012, "errorMessage": "Start date too far in past."}
        if start >= end:
            return 400, {"errorCode": 4000013, "errorMessage": "Start date after end date."}
        if body.get("transactionId") and body.get("notificationType"):
            return 400, {"errorCode": 4000019, "errorMessage": "Multiple filters supplied."}
        customer = None
        if body.get("transactionId"):
            if not self._visible(environment, body["transactionId"]):
                return _not_found()
            customer = self.customers[body["transactionId"]]
        found = [
            sent
            for sent in self.sent
            if sent.environment == environment
            and start <= sent.sent_at <= min(end, now)
            and body.get("notificationType") in (None, sent.kind)
            and body.get("notificationSubtype") in (None, sent.subtype)
            and (customer is None or self.customers.get(sent.transaction_id or "") == customer)
            and not (body.get("onlyFailures") and sent.delivered)
        ]
        offset = 0
        if "paginationToken" in request.query:
            try:
                offset = int(base64.urlsafe_b64decode(request.query["paginationToken"]))
            except ValueError:
                return 400, {"errorCode": 4000014, "errorMessage": "Invalid pagination token."}
        page = found[offset : offset + self.page_size]
        answer: dict[str, Any] = {
            "notificationHistory": [
                {
                    "signedPayload": sent.signed_payload,
                    "sendAttempts": [
                        {
                            "attemptDate": sent.sent_at,
                            "sendAttemptResult": "SUCCESS" if sent.delivered else "NO_RESPONSE",
                        }
                    ],
                }
                for sent in page
            ],
            "hasMore": offset + len(page) < len(found),
        }
        if answer["hasMore"]:
            answer["paginationToken"] = base64.urlsafe_b64encode(
                str(offset + len(page)).encode()
            ).decode()
        return 200, answer


def _not_found() -> tuple[int, dict[str, Any]]:
    return 404, {"errorCode": 4040010, "errorMessage": "Transaction id not found."}


def _json(status: int, body: dict[str, Any]) -> web.Response:
    # Apple answers "application/json" exactly (the library reads error bodies only then)
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json(status, {"errorCode": code, "errorMessage": message})
