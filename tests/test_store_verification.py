"""The App Store (infra/app_store.py) against a local fake of Apple (tests/app_store_fake.py):
signed transactions and notifications verify with Apple's own library against a chain the fake
made, and every forgery is refused with its reason; the App Store Server API's refund history,
notification history and transaction info are read, paged and mapped; faults are
StoreUnavailable."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from typing import Any

import pytest

from infra.app_store import AppStore, AppStoreKey
from infra.stores import (
    APP_STORE,
    FORGED,
    MALFORMED,
    PRODUCTION,
    PURCHASED,
    REFUNDED,
    REVOKED,
    SANDBOX,
    UNKNOWN,
    WRONG_APP,
    WRONG_ENVIRONMENT,
    ReceiptInvalid,
    StoreUnavailable,
)
from tests.app_store_fake import (
    APP_APPLE_ID,
    BUNDLE_ID,
    ISSUER_ID,
    KEY_ID,
    AppStoreFake,
    make_chain,
)

TOKEN = "0f1e5a2b-1234-4c3d-8e9f-0123456789ab"


@pytest.fixture
def apple() -> AppStoreFake:
    return AppStoreFake(delay=1.0)


def verifier(apple: AppStoreFake, **options: Any) -> AppStore:
    settings: dict[str, Any] = {
        "root_certificates": [apple.chain.root_der],
        "bundle_id": BUNDLE_ID,
        "app_apple_id": APP_APPLE_ID,
        **options,
    }
    return AppStore(**settings)


@pytest.fixture
async def app_store(apple: AppStoreFake, aiohttp_server: Any) -> AppStore:
    production = await aiohttp_server(apple.app("Production"))
    sandbox = await aiohttp_server(apple.app("Sandbox"))
    return verifier(
        apple,
        key=AppStoreKey(KEY_ID, ISSUER_ID, apple.private_key_pem),
        api_bases={
            PRODUCTION: str(production.make_url("")),
            SANDBOX: str(sandbox.make_url("")),
        },
        timeout=(0.5, 0.5),
        deadline=3.0,
    )


async def refused(store: AppStore, signed: str) -> ReceiptInvalid:
    with pytest.raises(ReceiptInvalid) as caught:
        await store.verify_transaction(signed)
    return caught.value


# --- signed transactions ------------------------------------------------------------------------


async def test_a_transaction_apple_signed_verifies_and_maps(apple: AppStoreFake) -> None:
    # GIVEN 3 of a consumable bought for $14.97 by an app that set the buyer's appAccountToken
    tid = apple.buy("coins_350", quantity=3, price=14970, account_token=TOKEN.upper())
    # WHEN the app's jwsRepresentation is verified
    found = await verifier(apple).verify_transaction(apple.signed_transaction(tid))
    # THEN it is Apple's transaction, price in cents, the token normalised
    assert found.store == APP_STORE and found.transaction_id == tid
    assert (found.product_id, found.quantity, found.product_type) == ("coins_350", 3, "Consumable")
    assert (found.environment, found.state, found.is_production) == (PRODUCTION, PURCHASED, True)
    assert (found.price, found.currency) == (1497, "USD")
    assert found.account_token == TOKEN
    assert found.refunded_quantity == 0 and found.revoked_at is None
    assert found.purchased_at is not None
    assert abs(found.purchased_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    found.ensure_not_revoked()


@pytest.mark.parametrize(
    ("currency", "milliunits", "minor"),
    [("USD", 990, 99), ("JPY", 160000, 160), ("KWD", 1250, 1250), ("EUR", 1995, 200)],
)
async def test_prices_are_in_the_currencys_minor_units(
    apple: AppStoreFake, currency: str, milliunits: int, minor: int
) -> None:
    tid = apple.buy("coins_100", price=milliunits, currency=currency)
    found = await verifier(apple).verify_transaction(apple.signed_transaction(tid))
    assert (found.price, found.currency) == (minor, currency)


async def test_no_price_when_apple_gives_none(apple: AppStoreFake) -> None:
    tid = apple.buy("coins_100")
    signed = apple.signed_transaction(tid, price=None, currency=None, appAccountToken=None)
    found = await verifier(apple).verify_transaction(signed)
    assert (found.price, found.currency, found.account_token) == (None, None, None)


async def test_a_sandbox_transaction_verifies_on_production_marked_sandbox(
    apple: AppStoreFake,
) -> None:
    # App Review buys in the Sandbox against the production server: verified, never production
    tid = apple.buy("coins_100", environment="Sandbox")
    found = await verifier(apple).verify_transaction(apple.signed_transaction(tid))
    assert (found.environment, found.is_production) == (SANDBOX, False)


async def test_a_sandbox_stack_refuses_production_transactions(apple: AppStoreFake) -> None:
    store = verifier(apple, environment=SANDBOX, app_apple_id=None)
    production = apple.buy("coins_100")
    assert (await refused(store, apple.signed_transaction(production))).reason == WRONG_ENVIRONMENT
    sandbox = apple.buy("coins_100", environment="Sandbox")
    assert (
        await store.verify_transaction(apple.signed_transaction(sandbox))
    ).environment == SANDBOX


@pytest.mark.parametrize("environment", ["Xcode", "LocalTesting", "Staging", None])
async def test_unsigned_and_unknown_environments_are_refused(
    apple: AppStoreFake, environment: str | None
) -> None:
    # Xcode and LocalTesting data is not verified by Apple's library at all: never accepted,
    # even signed by an unknown key
    tid = apple.buy("coins_100")
    forged = apple.signed_transaction(tid, chain=make_chain("Mallory"), environment=environment)
    assert (await refused(verifier(apple), forged)).reason == WRONG_ENVIRONMENT


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("unknown root", FORGED),
        ("leaf without Apple's marker", FORGED),
        ("intermediate without Apple's marker", FORGED),
        ("expired leaf", FORGED),
        ("two certificates", FORGED),
        ("no x5c", FORGED),
        ("HS256", FORGED),
        ("tampered payload", FORGED),
        ("other bundle", WRONG_APP),
        ("other environment claimed in a signed sandbox transaction", WRONG_ENVIRONMENT),
    ],
)
async def test_forgeries_are_refused_with_their_reason(
    apple: AppStoreFake, forge: str, reason: str
) -> None:
    tid = apple.buy("coins_100")
    genuine = apple.signed_transaction(tid)
    header, payload, signature = genuine.split(".")
    if forge == "unknown root":
        signed = apple.signed_transaction(tid, chain=make_chain("Mallory"))
    elif forge == "leaf without Apple's marker":
        signed = apple.signed_transaction(tid, chain=make_chain(leaf_marker=False))
    elif forge == "intermediate without Apple's marker":
        signed = apple.signed_transaction(tid, chain=make_chain(intermediate_marker=False))
    elif forge == "expired leaf":
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        signed = apple.signed_transaction(tid, chain=make_chain(leaf_not_after=past))
    elif forge == "two certificates":
        short = make_chain()
        signed = _resign(apple, genuine, short, x5c=short.x5c[:2])
    elif forge == "no x5c":
        signed = _resign(apple, genuine, apple.chain, x5c=None)
    elif forge == "HS256":
        claims = json.loads(_unb64(payload))
        hs = _b64(json.dumps({"alg": "HS256", "x5c": apple.chain.x5c}).encode())
        signed = f"{hs}.{_b64(json.dumps(claims).encode())}.{signature}"
    elif forge == "tampered payload":
        claims = json.loads(_unb64(payload))
        claims["quantity"] = 100
        signed = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    elif forge == "other bundle":
        signed = apple.signed_transaction(tid, bundleId="com.other.app")
    else:
        # a genuine Sandbox transaction whose payload is edited to claim Production
        sandbox = apple.buy("coins_100", environment="Sandbox")
        _, sandbox_payload, sandbox_signature = apple.signed_transaction(sandbox).split(".")
        claims = json.loads(_unb64(sandbox_payload))
        claims["environment"] = "Production"
        signed = f"{header}.{_b64(json.dumps(claims).encode())}.{sandbox_signature}"
        reason = FORGED  # the signature no longer matches: refused before the environment
    assert (await refused(verifier(apple), signed)).reason == reason


@pytest.mark.parametrize(
    "junk",
    ["", "not a jws", "a.b.c", "..", "x" * 40_000, f"{'e30'}.{'W10'}.sig"],
)
async def test_malformed_proofs_are_refused(apple: AppStoreFake, junk: str) -> None:
    assert (await refused(verifier(apple), junk)).reason == MALFORMED


async def test_a_signed_transaction_without_its_ids_is_malformed(apple: AppStoreFake) -> None:
    tid = apple.buy("coins_100")
    signed = apple.signed_transaction(tid, productId=None)
    assert (await refused(verifier(apple), signed)).reason == MALFORMED


async def test_a_refunded_transaction_is_refused_as_revoked(apple: AppStoreFake) -> None:
    tid = apple.buy("coins_350", quantity=2)
    apple.refund(tid, reason=1)
    found = await verifier(apple).verify_transaction(apple.signed_transaction(tid))
    assert (found.state, found.refunded_quantity, found.revocation_reason) == (
        REFUNDED,
        2,
        "app_issue",
    )
    assert found.revoked_at is not None
    with pytest.raises(ReceiptInvalid) as caught:
        found.ensure_not_revoked()
    assert caught.value.reason == REVOKED


async def test_a_prorated_refund_gives_the_share(apple: AppStoreFake) -> None:
    tid = apple.buy("coins_350", quantity=4)
    apple.refund(tid, prorated_millipercent=25_000)
    found = await verifier(apple).verify_transaction(apple.signed_transaction(tid))
    assert (found.state, found.refunded_quantity, found.refunded_share_millipercent) == (
        REFUNDED,
        0,
        25_000,
    )


# --- notifications ------------------------------------------------------------------------------


async def test_refund_and_reversal_notifications_verify_with_their_transaction(
    apple: AppStoreFake,
) -> None:
    store = verifier(apple)
    tid = apple.buy("coins_350")
    refund = await store.verify_notification(apple.refund(tid))
    assert (refund.kind, refund.subtype, refund.environment) == ("REFUND", None, PRODUCTION)
    assert refund.transaction is not None and refund.transaction.state == REFUNDED
    assert refund.transaction_id == tid and refund.notification_id
    reversed_ = await store.verify_notification(apple.reverse_refund(tid))
    assert reversed_.kind == "REFUND_REVERSED"
    assert reversed_.transaction is not None and reversed_.transaction.state == PURCHASED
    assert reversed_.notification_id != refund.notification_id


async def test_a_test_notification_has_no_transaction(apple: AppStoreFake) -> None:
    found = await verifier(apple).verify_notification(apple.notify("TEST"))
    assert (found.kind, found.transaction) == ("TEST", None)


async def test_unknown_notification_types_still_arrive(apple: AppStoreFake) -> None:
    tid = apple.buy("coins_100")
    found = await verifier(apple).verify_notification(
        apple.notify("SOMETHING_NEW", tid, subtype="LATER")
    )
    assert (found.kind, found.subtype) == ("SOMETHING_NEW", "LATER")


async def test_forged_notifications_are_refused(apple: AppStoreFake) -> None:
    store = verifier(apple)
    tid = apple.buy("coins_100")
    forged = [
        (apple.notify("REFUND", tid, chain=make_chain("Mallory")), FORGED),
        (apple.notify("REFUND", tid, bundleId="com.other.app"), WRONG_APP),
        (apple.notify("REFUND", tid, appAppleId=42), WRONG_APP),
        (apple.notify("REFUND", tid, environment="Xcode"), WRONG_ENVIRONMENT),
    ]
    # a genuine notification whose inner transaction is someone else's signature
    outer = json.loads(_unb64(apple.refund(tid).split(".")[1]))
    outer["data"]["signedTransactionInfo"] = apple.signed_transaction(
        tid, chain=make_chain("Mallory")
    )
    forged.append((apple.sign(outer), FORGED))
    for signed, reason in forged:
        with pytest.raises(ReceiptInvalid) as caught:
            await store.verify_notification(signed)
        assert caught.value.reason == reason, signed


# --- the App Store Server API -------------------------------------------------------------------


async def test_refund_history_is_read_every_page_and_resumes_from_its_revision(
    apple: AppStoreFake, app_store: AppStore
) -> None:
    # GIVEN a customer with 5 refunds (and someone else's), Apple answering 2 a page
    apple.page_size = 2
    mine = [apple.buy("coins_100", customer="c1") for _ in range(6)]
    other = apple.buy("coins_100", customer="c2")
    for i, tid in enumerate(mine[:5]):
        apple.refund(tid, at=1_700_000_000 + i)
    apple.refund(other)
    # WHEN every page is read from any of the customer's transactions
    refunded, revision = await app_store.refunds(mine[5])
    # THEN the customer's refunds, oldest first, verified; the bearer JWT was Apple's shape
    assert [t.transaction_id for t in refunded] == mine[:5]
    assert all(t.state == REFUNDED for t in refunded)
    assert [r["path"] for r in apple.requests] == [f"/inApps/v2/refund/lookup/{mine[5]}"] * 3
    # AND asked again from the last revision, only newer refunds come
    apple.refund(mine[5], at=1_700_000_100)
    newer, _ = await app_store.refunds(mine[0], revision=revision)
    assert [t.transaction_id for t in newer] == [mine[5]]


async def test_refund_history_of_the_sandbox_is_asked_of_the_sandbox_host(
    apple: AppStoreFake, app_store: AppStore
) -> None:
    tid = apple.buy("coins_100", environment="Sandbox")
    apple.refund(tid)
    page = await app_store.refund_history(tid, SANDBOX)
    assert [t.environment for t in page.transactions] == [SANDBOX] and not page.has_more
    with pytest.raises(ReceiptInvalid) as caught:
        await app_store.refund_history(tid, PRODUCTION)  # the production host does not know it
    assert caught.value.reason == UNKNOWN
    assert [r["environment"] for r in apple.requests] == ["Sandbox", "Production"]


async def test_transaction_info_says_what_apple_says_now(
    apple: AppStoreFake, app_store: AppStore
) -> None:
    tid = apple.buy("coins_100")
    old_proof = apple.signed_transaction(tid)
    apple.refund(tid)
    # the device's proof predates the refund; Apple's current record does not
    assert (await app_store.verify_transaction(old_proof)).state == PURCHASED
    assert (await app_store.transaction_info(tid)).state == REFUNDED
    with pytest.raises(ReceiptInvalid) as caught:
        await app_store.transaction_info("1999999999")
    assert caught.value.reason == UNKNOWN


async def test_the_api_s_answers_are_verified_like_a_device_s(
    apple: AppStoreFake, app_store: AppStore
) -> None:
    # GIVEN answers signed by someone else than Apple (TLS intercepted, a wrong host)
    tid = apple.buy("coins_100")
    apple.refund(tid)
    apple.api_chain = make_chain("Mallory")
    # THEN they are refused as forged, not believed
    for read in (app_store.transaction_info(tid), app_store.refund_history(tid)):
        with pytest.raises(ReceiptInvalid) as caught:
            await read
        assert caught.value.reason == FORGED


async def test_notification_history_is_paged_filtered_and_verified(
    apple: AppStoreFake, app_store: AppStore
) -> None:
    apple.page_size = 2
    sold = [apple.buy("coins_100", customer=f"c{i}") for i in range(4)]
    for tid in sold:
        apple.notify("ONE_TIME_CHARGE", tid)
    apple.refund(sold[0])
    apple.refund(sold[1], delivered=False)  # Apple could not reach us
    apple.refund(sold[2])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)

    async def every(**filters: Any) -> list[Any]:
        found, token = [], None
        while True:
            page = await app_store.notification_history(
                start, end, pagination_token=token, **filters
            )
            found.extend(page.notifications)
            if not page.has_more:
                return found
            token = page.pagination_token

    refunds = await every(notification_type="REFUND")
    assert [n.transaction_id for n in refunds] == sold[:3]
    assert all(n.transaction and n.transaction.state == REFUNDED for n in refunds)
    missed = await every(notification_type="REFUND", only_failures=True)
    assert [n.transaction_id for n in missed] == [sold[1]]
    of_one_customer = await every(transaction_id=sold[0])
    assert [n.kind for n in of_one_customer] == ["ONE_TIME_CHARGE", "REFUND"]
    assert len(await every()) == 7
    body = apple.requests[0]["body"]
    assert body["notificationType"] == "REFUND" and body["startDate"] < body["endDate"]


async def test_notification_history_requests_apple_refuses_are_our_bug(
    app_store: AppStore,
) -> None:
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(ValueError, match="4000012"):
        await app_store.notification_history(now - dt.timedelta(days=200), now)
    with pytest.raises(ValueError, match="4000019"):
        await app_store.notification_history(
            now - dt.timedelta(days=1), now, notification_type="REFUND", transaction_id="1"
        )


async def test_the_bearer_jwt_is_checked_as_apple_does(
    apple: AppStoreFake, aiohttp_server: Any
) -> None:
    tid = apple.buy("coins_100")
    server = await aiohttp_server(apple.app("Production"))
    base = {PRODUCTION: str(server.make_url(""))}
    other_key = AppStoreFake().private_key_pem
    for key, bundle in [
        (AppStoreKey(KEY_ID, ISSUER_ID, other_key), BUNDLE_ID),  # not the key Apple holds
        (AppStoreKey("OTHERKEY", ISSUER_ID, apple.private_key_pem), BUNDLE_ID),
        (AppStoreKey(KEY_ID, "other-issuer", apple.private_key_pem), BUNDLE_ID),
        (AppStoreKey(KEY_ID, ISSUER_ID, apple.private_key_pem), "com.other.app"),
    ]:
        store = AppStore(
            root_certificates=[apple.chain.root_der],
            bundle_id=bundle,
            app_apple_id=APP_APPLE_ID,
            key=key,
            api_bases=base,
            timeout=(0.5, 0.5),
        )
        # our key refused is a deployment error: no definite answer about the purchase
        with pytest.raises(StoreUnavailable, match="401"):
            await store.refund_history(tid)
    claims = _claims_of(apple.requests[-1]["authorization"])
    assert claims["aud"] == "appstoreconnect-v1" and claims["bid"] == "com.other.app"


@pytest.mark.parametrize("kind", ["500", "429", "timeout-before", "timeout-after"])
async def test_api_faults_are_store_unavailable_and_a_retry_answers(
    apple: AppStoreFake, app_store: AppStore, kind: str
) -> None:
    tid = apple.buy("coins_100")
    apple.refund(tid)
    apple.fail("/refund/lookup", kind)
    with pytest.raises(StoreUnavailable):
        await app_store.refund_history(tid)
    assert [t.transaction_id for t in (await app_store.refund_history(tid)).transactions] == [tid]


async def test_an_unreachable_app_store_is_unavailable(apple: AppStoreFake) -> None:
    store = verifier(
        apple,
        key=AppStoreKey(KEY_ID, ISSUER_ID, apple.private_key_pem),
        api_bases={PRODUCTION: "http://127.0.0.1:9"},
        timeout=(0.5, 0.5),
    )
    with pytest.raises(StoreUnavailable):
        await store.refund_history("2000000001")


async def test_a_deadline_bounds_whatever_the_library_does(apple: AppStoreFake) -> None:
    store = verifier(apple, deadline=0.05)
    store._verifiers[PRODUCTION].verify_and_decode_signed_transaction = (  # type: ignore[method-assign]
        lambda signed: time.sleep(1)
    )
    with pytest.raises(StoreUnavailable, match="no answer"):
        await store.verify_transaction(apple.signed_transaction(apple.buy("coins_100")))


# --- helpers -------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _resign(apple: AppStoreFake, genuine: str, chain: Any, x5c: list[str] | None) -> str:
    import jwt

    claims = json.loads(_unb64(genuine.split(".")[1]))
    headers: dict[str, Any] = {"typ": None}
    if x5c is not None:
        headers["x5c"] = x5c
    return jwt.encode(claims, chain.leaf_key, algorithm="ES256", headers=headers)


def _claims_of(authorization: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(_unb64(authorization.split(" ")[1].split(".")[1]))
    return claims
