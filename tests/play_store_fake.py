"""A local fake of Google Play, for the store tests: Google's OAuth2 token endpoint, the Android
Publisher API's one-time purchase endpoints and voided purchases, Google's OIDC signing
certificates, and Pub/Sub push deliveries of real-time developer notifications.

Credentials as Google issues them: `service_account_info(token_uri)` is a service account key
JSON (an RSA key this fake generated, its `private_key_id`, `client_email`, and the token URI);
`POST /token` grants an access token for a JWT-bearer assertion signed by that key (RS256, `kid`
the key id, `iss` the email, `aud` https://oauth2.googleapis.com/token, the androidpublisher
scope, an hour at most), and the API answers 401 to any other bearer token.

The API (`/androidpublisher/v3/applications/{package}/purchases/...`): `products/{id}/tokens/{t}`
(GET: the ProductPurchase resource, fields as documented: purchaseState 0 purchased / 1 canceled
/ 2 pending, consumptionState, acknowledgementState, purchaseType 0 test / 1 promo / 2 rewarded
(absent for a real purchase), quantity, refundableQuantity, orderId (absent while pending),
obfuscatedExternalAccountId, regionCode); `:consume` and `:acknowledge` (POST; a second one is
an error, as is consuming a pending or cancelled purchase); `voidedpurchases` (GET: startTime at
most 30 days back, endTime, maxResults, token pagination, type, and partial refunds only with
includeQuantityBasedPartialRefund=true).

The purchases: `buy` (a quantity, an account id, pending or not, test / promo / rewarded, even
for another package), `complete` and `cancel` a pending one, `void` a purchase wholly or some of
its units (a quantity-based partial refund; the last units make a full void), `lapse` (Google
refunds a purchase not acknowledged within 3 days).

Notifications: `notification(...)` builds a DeveloperNotification; `push(...)` delivers it as
Pub/Sub does: the JSON envelope with base64 data, and an `Authorization: Bearer` OIDC token
signed by Google's key, which `GET /oauth2/v1/certs` publishes ({key id: PEM certificate}).

Faults on demand: a 500, a 429, a timeout before or after acting (`fail`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

PACKAGE = "com.livecoins.app"
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PUSH_AUDIENCE = "https://livecoins.example/webhooks/play"
PUSH_ACCOUNT = "play-push@livecoins-project.iam.gserviceaccount.com"
DAY_MS = 24 * 3600 * 1000


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


_POOL: dict[int, rsa.RSAPrivateKey] = {}


def _pooled(slot: int) -> rsa.RSAPrivateKey:
    """RSA keys made once per test run (2048-bit keys take a tenth of a second each); slots
    0-3 are Google's, 4-7 service accounts', so the two never share a key."""
    if slot not in _POOL:
        _POOL[slot] = _rsa()
    return _POOL[slot]


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _certificate(key: rsa.RSAPrivateKey, name: str) -> str:
    """A self-signed certificate of `key`, as Google publishes its OIDC keys (x509 PEM)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=14))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Fault:
    path: str  # a substring of the request path
    kind: str  # "500" | "429" | "timeout-before" | "timeout-after"
    times: int = 1


@dataclass
class PlayStoreFake:
    package_name: str = PACKAGE
    delay: float = 1.5  # longer than the client's read timeout in the tests
    page_size: int = 1000
    purchases: dict[str, dict[str, Any]] = field(default_factory=dict)
    voided: list[dict[str, Any]] = field(default_factory=list)
    accounts: dict[str, tuple[str, rsa.RSAPublicKey]] = field(default_factory=dict)
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    google_keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict, repr=False)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _n: int = 0

    def __post_init__(self) -> None:
        self.rotate_google_key()

    def fail(self, path: str, kind: str, times: int = 1) -> None:
        self.faults.append(Fault(path, kind, times))

    def _next(self) -> int:
        self._n += 1
        return self._n

    # --- credentials ----------------------------------------------------------------------------
    def service_account_info(
        self, token_uri: str, email: str = "livecoins@livecoins-project.iam.gserviceaccount.com"
    ) -> dict[str, str]:
        """A service account key JSON as the Google Cloud console downloads it."""
        key = _pooled(4 + len(self.accounts) % 4)
        key_id = f"{self._next():040x}"
        self.accounts[email] = (key_id, key.public_key())
        return {
            "type": "service_account",
            "project_id": "livecoins-project",
            "private_key_id": key_id,
            "private_key": _pem(key),
            "client_email": email,
            "client_id": str(100000000000000000000 + self._n),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        }

    def rotate_google_key(self) -> str:
        """Google starts signing OIDC tokens with a new key (the old one stays published)."""
        key_id = f"{self._next():040x}"
        self.google_keys[key_id] = _pooled(len(self.google_keys) % 4)
        self.signing_key_id = key_id
        return key_id

    # --- purchases ------------------------------------------------------------------------------
    def buy(
        self,
        product_id: str,
        *,
        quantity: int = 1,
        account_id: str | None = None,
        pending: bool = False,
        purchase_type: int | None = None,
        region: str = "US",
        package: str | None = None,
    ) -> str:
        """A one-time product bought in the app: its purchase token."""
        n = self._next()
        token = f"{'abcdefghijklmnop'[n % 16]}{n:06d}.AO-J1Oz" + base64.urlsafe_b64encode(
            n.to_bytes(8, "big") * 6
        ).decode().rstrip("=")
        purchase: dict[str, Any] = {
            "kind": "androidpublisher#productPurchase",
            "purchaseTimeMillis": str(_ms()),
            "purchaseState": 2 if pending else 0,
            "consumptionState": 0,
            "developerPayload": "",
            "acknowledgementState": 0,
            "productId": product_id,
            "quantity": quantity,
            "refundableQuantity": quantity,
            "regionCode": region,
        }
        if not pending:
            purchase["orderId"] = self._order_id(n)
        if purchase_type is not None:
            purchase["purchaseType"] = purchase_type
        if account_id:
            purchase["obfuscatedExternalAccountId"] = account_id
        self.purchases[token] = {"package": package or self.package_name, "resource": purchase}
        return token

    @staticmethod
    def _order_id(n: int) -> str:
        return f"GPA.3372-{n:04d}-{n * 7 % 10000:04d}-{n * 13 % 100000:05d}"

    def complete(self, token: str) -> None:
        """The pending payment went through."""
        purchase = self.purchases[token]["resource"]
        purchase.update(purchaseState=0, orderId=self._order_id(self._next()))

    def cancel(self, token: str) -> None:
        """The pending payment never came."""
        self.purchases[token]["resource"]["purchaseState"] = 1

    def void(
        self, token: str, quantity: int | None = None, *, reason: int = 1, source: int = 0
    ) -> dict[str, Any]:
        """Google refunds `quantity` units of the purchase (None: all that are left). A partial
        refund keeps the purchase; when nothing is left, the void is a full one."""
        purchase = self.purchases[token]["resource"]
        left = purchase["refundableQuantity"]
        units = left if quantity is None else quantity
        assert 0 < units <= left, (units, left)
        purchase["refundableQuantity"] = left - units
        record = {
            "kind": "androidpublisher#voidedPurchase",
            "purchaseToken": token,
            "purchaseTimeMillis": purchase["purchaseTimeMillis"],
            "voidedTimeMillis": str(_ms()),
            "orderId": purchase.get("orderId", ""),
            "voidedSource": source,
            "voidedReason": reason,
        }
        if purchase["refundableQuantity"] == 0:
            purchase["purchaseState"] = 1
        else:
            record["voidedQuantity"] = units
        self.voided.append(record)
        return record

    def lapse(self, token: str) -> dict[str, Any]:
        """Not acknowledged within 3 days: Google refunds the purchase."""
        return self.void(token, reason=8, source=2)

    # --- notifications --------------------------------------------------------------------------
    def notification(
        self,
        kind: str,
        token: str | None = None,
        *,
        package: str | None = None,
        notification_type: int = 1,
        partial: bool = False,
    ) -> dict[str, Any]:
        """A DeveloperNotification: kind "one_time" (notification_type 1 purchased, 2
        canceled), "voided" or "test"."""
        note: dict[str, Any] = {
            "version": "1.0",
            "packageName": package or self.package_name,
            "eventTimeMillis": str(_ms()),
        }
        if kind == "one_time":
            assert token
            note["oneTimeProductNotification"] = {
                "version": "1.0",
                "notificationType": notification_type,
                "purchaseToken": token,
                "sku": self.purchases[token]["resource"]["productId"],
            }
        elif kind == "voided":
            assert token
            note["voidedPurchaseNotification"] = {
                "purchaseToken": token,
                "orderId": self.purchases[token]["resource"].get("orderId", ""),
                "productType": 2,
                "refundType": 2 if partial else 1,
            }
        else:
            note["testNotification"] = {"version": "1.0"}
        return note

    def push(
        self,
        notification: dict[str, Any],
        *,
        audience: str = PUSH_AUDIENCE,
        email: str = PUSH_ACCOUNT,
        issuer: str = "https://accounts.google.com",
        key: rsa.RSAPrivateKey | None = None,
        expires_in: int = 3600,
        email_verified: bool = True,
    ) -> tuple[str, bytes]:
        """A Pub/Sub push delivery: (the Authorization header, the body)."""
        n = self._next()
        now = int(time.time())
        claims = {
            "aud": audience,
            "azp": "111222333444555666777",
            "email": email,
            "email_verified": email_verified,
            "exp": now + expires_in,
            "iat": now,
            "iss": issuer,
            "sub": "111222333444555666777",
        }
        token = jwt.encode(
            claims,
            key or self.google_keys[self.signing_key_id],
            algorithm="RS256",
            headers={"kid": self.signing_key_id},
        )
        published = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        body = {
            "message": {
                "attributes": {},
                "data": base64.b64encode(json.dumps(notification).encode()).decode(),
                "messageId": str(9000000000000 + n),
                "message_id": str(9000000000000 + n),
                "publishTime": published,
                "publish_time": published,
            },
            "subscription": "projects/livecoins-project/subscriptions/play-notifications",
        }
        return f"Bearer {token}", json.dumps(body).encode()

    # --- the app --------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        base = "/androidpublisher/v3/applications/{package}/purchases"
        app.router.add_post("/token", self._handle(self._token, authorized=False))
        app.router.add_get("/oauth2/v1/certs", self._handle(self._certs, authorized=False))
        app.router.add_get(f"{base}/products/{{product}}/tokens/{{token}}", self._handle(self._get))
        app.router.add_post(
            f"{base}/products/{{product}}/tokens/{{token}}", self._handle(self._settle)
        )
        app.router.add_get(f"{base}/voidedpurchases", self._handle(self._list_voided))
        return app

    def _handle(
        self,
        act: Callable[[web.Request, dict[str, Any]], tuple[int, Any]],
        authorized: bool = True,
    ) -> Any:
        async def handler(request: web.Request) -> web.Response:
            raw = await request.read()
            if request.content_type == "application/x-www-form-urlencoded":
                body: dict[str, Any] = dict(await request.post())
            else:
                body = json.loads(raw) if raw else {}
            self.requests.append(
                {
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
                    return _error(500, "Internal error encountered.", "INTERNAL")
                if fault.kind == "429":
                    return _error(429, "Quota exceeded.", "RESOURCE_EXHAUSTED")
                if fault.kind == "timeout-before":
                    await asyncio.sleep(self.delay)
                    return _error(500, "too late", "INTERNAL")
            if authorized and not self._authorized(request.headers.get("Authorization", "")):
                return _error(
                    401,
                    "Request had invalid authentication credentials.",
                    "UNAUTHENTICATED",
                )
            status, answer = act(request, body)
            if fault and fault.kind == "timeout-after":
                await asyncio.sleep(self.delay)
            if status == 204:
                return web.Response(status=204)
            return web.json_response(answer, status=status)

        return handler

    def _authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        grant = self.access_tokens.get(token) if scheme == "Bearer" else None
        return grant is not None and grant[1] > time.time()

    def _token(self, request: web.Request, form: dict[str, Any]) -> tuple[int, Any]:
        """The OAuth2 token endpoint's JWT-bearer grant, as Google documents it."""
        if form.get("grant_type") != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant"}
        assertion = str(form.get("assertion", ""))
        try:
            header = jwt.get_unverified_header(assertion)
            email = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
            key_id, public_key = self.accounts[email]
            if header.get("alg") != "RS256" or header.get("kid") != key_id:
                raise jwt.InvalidTokenError(f"header {header}")
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=GOOGLE_TOKEN_AUDIENCE,
                options={"require": ["iss", "aud", "exp", "iat", "scope"]},
            )
            if claims["exp"] - claims["iat"] > 3600:
                raise jwt.InvalidTokenError("lifetime over an hour")
            if SCOPE not in str(claims["scope"]).split():
                raise jwt.InvalidTokenError(f"scope {claims['scope']}")
        except (jwt.PyJWTError, KeyError) as error:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {error}"}
        access = f"ya29.fake-{self._next()}"
        self.access_tokens[access] = (email, time.time() + 3599)
        return 200, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"}

    def _certs(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        return 200, {kid: _certificate(key, kid) for kid, key in self.google_keys.items()}

    def _find(self, request: web.Request) -> tuple[str, dict[str, Any] | None, str]:
        token, _, action = request.match_info["token"].partition(":")
        record = self.purchases.get(token)
        if (
            record is None
            or record["package"] != request.match_info["package"]
            or record["resource"]["productId"] != request.match_info["product"]
        ):
            return token, None, action
        return token, record["resource"], action

    def _get(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        _, purchase, action = self._find(request)
        if action:
            return _error_body(404, "Not Found", "NOT_FOUND")
        if purchase is None:
            return _error_body(400, "The purchase token is invalid.", "INVALID_ARGUMENT")
        return 200, dict(purchase)

    def _settle(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        _, purchase, action = self._find(request)
        if action not in ("consume", "acknowledge"):
            return _error_body(404, "Not Found", "NOT_FOUND")
        if purchase is None:
            return _error_body(400, "The purchase token is invalid.", "INVALID_ARGUMENT")
        if purchase["purchaseState"] != 0 or purchase["consumptionState"] == 1:
            return _error_body(
                400, "The product purchase is not owned by the user.", "INVALID_ARGUMENT"
            )
        if action == "consume":
            purchase.update(consumptionState=1, acknowledgementState=1)
        elif purchase["acknowledgementState"] == 1:
            return _error_body(400, "The purchase is already acknowledged.", "INVALID_ARGUMENT")
        else:
            purchase.update(
                acknowledgementState=1, developerPayload=body.get("developerPayload", "")
            )
        return 204, None

    def _list_voided(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        if request.match_info["package"] != self.package_name:
            return _error_body(403, "The caller does not have permission", "PERMISSION_DENIED")
        query = dict(request.query)
        now = _ms()
        if "token" in query:
            try:
                cursor = json.loads(base64.urlsafe_b64decode(query["token"]))
                start, end, offset = cursor["start"], cursor["end"], cursor["offset"]
            except (ValueError, KeyError):
                return _error_body(400, "Invalid pagination token.", "INVALID_ARGUMENT")
        else:
            offset = 0
            start = int(query.get("startTime", now - 30 * DAY_MS))
            end = int(query.get("endTime", now))
            if start < now - 30 * DAY_MS - 60_000:
                return _error_body(400, "startTime is too far in the past.", "INVALID_ARGUMENT")
            if end > now + 60_000 or start > end:
                return _error_body(400, "Invalid time range.", "INVALID_ARGUMENT")
        partial = query.get("includeQuantityBasedPartialRefund") == "true"
        found = [
            record
            for record in self.voided
            if start <= int(record["voidedTimeMillis"]) <= end
            and (partial or "voidedQuantity" not in record)
            and self.purchases[record["purchaseToken"]]["package"] == self.package_name
        ]
        size = min(int(query.get("maxResults", 1000)), self.page_size)
        page = found[offset : offset + size]
        answer: dict[str, Any] = {
            "pageInfo": {"totalResults": len(found), "resultPerPage": size, "startIndex": offset},
            "voidedPurchases": [dict(record) for record in page],
        }
        if offset + len(page) < len(found):
            cursor = {"start": start, "end": end, "offset": offset + len(page)}
            answer["tokenPagination"] = {
                "nextPageToken": base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
            }
        return 200, answer


def _error_body(code: int, message: str, status: str) -> tuple[int, dict[str, Any]]:
    return code, {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": "invalid"}],
            "status": status,
        }
    }


def _error(code: int, message: str, status: str) -> web.Response:
    answer, body = _error_body(code, message, status)
    return web.json_response(body, status=answer)
