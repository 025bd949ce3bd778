"""Google Play (infra/play_store.py) against a local fake of Google (tests/play_store_fake.py):
the service account's token grant, purchases read and mapped in every state, consume and
acknowledge idempotent from our side, voided purchases paged with partial refunds, Pub/Sub
pushes verified (and forged ones refused), faults as StoreUnavailable."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from infra.play_store import (
    ONE_TIME_CANCELED,
    ONE_TIME_PURCHASED,
    TEST_NOTIFICATION,
    VOIDED,
    PlayStore,
)
from infra.stores import (
    CANCELLED,
    FORGED,
    MALFORMED,
    PENDING,
    PLAY_STORE,
    PRODUCTION,
    PROMO,
    PURCHASED,
    REVOKED,
    REWARDED,
    TEST,
    UNKNOWN,
    WRONG_APP,
    ReceiptInvalid,
    StoreUnavailable,
    play_transaction_id,
)
from tests.play_store_fake import (
    JWT_BEARER,
    PACKAGE,
    PUSH_ACCOUNT,
    PUSH_AUDIENCE,
    PlayStoreFake,
    _rsa,
)


@pytest.fixture
async def google(aiohttp_server: Any) -> PlayStoreFake:
    fake = PlayStoreFake(delay=1.0)
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return fake


def client(google: PlayStoreFake, **options: Any) -> PlayStore:
    base = google.base_url  # type: ignore[attr-defined]
    settings: dict[str, Any] = {
        "package_name": PACKAGE,
        "service_account_info": google.service_account_info(f"{base}/token"),
        "api_base": base,
        "push_audience": PUSH_AUDIENCE,
        "push_service_account": PUSH_ACCOUNT,
        "certs_url": f"{base}/oauth2/v1/certs",
        "timeout": (0.5, 0.5),
        "deadline": 3.0,
        **options,
    }
    return PlayStore(**settings)


@pytest.fixture
def play(google: PlayStoreFake) -> PlayStore:
    return client(google)


def api_calls(google: PlayStoreFake) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in google.requests if r["path"] != "/token"]


# --- reading a purchase ---------------------------------------------------------------------------


async def test_a_purchase_is_read_with_a_service_account_token_and_mapped(
    google: PlayStoreFake, play: PlayStore
) -> None:
    # GIVEN 3 of a product bought by an app that named the buyer's account
    token = google.buy("coins_350", quantity=3, account_id="acct-alice", region="FR")
    # WHEN the purchase is read
    found = await play.purchase("coins_350", token)
    # THEN Google's record, mapped; the transaction id is the token's digest, not the token
    assert found.store == PLAY_STORE and found.transaction_id == play_transaction_id(token)
    assert token not in found.transaction_id and token not in repr(found)
    assert (found.product_id, found.quantity, found.state) == ("coins_350", 3, PURCHASED)
    assert (found.environment, found.is_production) == (PRODUCTION, True)
    assert (found.account_token, found.region) == ("acct-alice", "FR")
    assert found.order_id and found.order_id.startswith("GPA.")
    assert (found.consumed, found.acknowledged, found.refunded_quantity) == (False, False, 0)
    assert (found.price, found.currency, found.purchase_token) == (None, None, token)
    # AND the token came from a JWT-bearer grant the fake checked; the API call carried it
    grant = google.requests[0]
    assert (grant["path"], grant["body"]["grant_type"]) == ("/token", JWT_BEARER)
    path = (
        f"/androidpublisher/v3/applications/{PACKAGE}/purchases/products/coins_350/tokens/{token}"
    )
    assert api_calls(google) == [("GET", path)]
    assert google.requests[1]["authorization"].startswith("Bearer ya29.fake-")


async def test_the_access_token_is_reused(google: PlayStoreFake, play: PlayStore) -> None:
    token = google.buy("coins_100")
    for _ in range(3):
        await play.purchase("coins_100", token)
    assert [r["path"] for r in google.requests].count("/token") == 1


@pytest.mark.parametrize(("purchase_type", "environment"), [(0, TEST), (1, PROMO), (2, REWARDED)])
async def test_test_promo_and_rewarded_purchases_are_not_production(
    google: PlayStoreFake, play: PlayStore, purchase_type: int, environment: str
) -> None:
    token = google.buy("coins_100", purchase_type=purchase_type)
    found = await play.purchase("coins_100", token)
    assert (found.environment, found.is_production) == (environment, False)


async def test_a_pending_purchase_completes(google: PlayStoreFake, play: PlayStore) -> None:
    token = google.buy("coins_100", pending=True)
    pending = await play.purchase("coins_100", token)
    assert (pending.state, pending.order_id) == (PENDING, None)
    pending.ensure_not_revoked()  # pending is not refused: the caller answers PaymentPending
    google.complete(token)
    done = await play.purchase("coins_100", token)
    assert done.state == PURCHASED and done.order_id
    assert done.transaction_id == pending.transaction_id  # the same key in both states


async def test_a_cancelled_pending_purchase_is_revoked(
    google: PlayStoreFake, play: PlayStore
) -> None:
    token = google.buy("coins_100", pending=True)
    google.cancel(token)
    found = await play.purchase("coins_100", token)
    assert found.state == CANCELLED
    with pytest.raises(ReceiptInvalid) as caught:
        found.ensure_not_revoked()
    assert caught.value.reason == REVOKED


async def test_partial_then_full_voids_are_what_the_purchase_says(
    google: PlayStoreFake, play: PlayStore
) -> None:
    token = google.buy("coins_100", quantity=5)
    google.void(token, 2)
    partly = await play.purchase("coins_100", token)
    assert (partly.state, partly.refunded_quantity) == (PURCHASED, 2)
    google.void(token)  # the last 3 units
    whole = await play.purchase("coins_100", token)
    assert (whole.state, whole.refunded_quantity) == (CANCELLED, 5)


@pytest.mark.parametrize(
    "case", ["unknown token", "other app's token", "other product's token", "junk"]
)
async def test_tokens_google_does_not_know_here_are_refused(
    google: PlayStoreFake, play: PlayStore, case: str
) -> None:
    reason = UNKNOWN
    if case == "unknown token":
        product, token = "coins_100", "notatoken.AO-J1Ozzzzzzzzzzzzzz"
    elif case == "other app's token":
        product, token = "coins_100", google.buy("coins_100", package="com.other.app")
    elif case == "other product's token":  # a cheap product's token offered as an expensive one
        product, token = "coins_5000", google.buy("coins_100")
    else:
        product, token, reason = "coins_100", "../../voidedpurchases?x=", MALFORMED
    with pytest.raises(ReceiptInvalid) as caught:
        await play.purchase(product, token)
    assert caught.value.reason == reason
    if reason == MALFORMED:
        assert api_calls(google) == []  # never sent


# --- consume and acknowledge ----------------------------------------------------------------------


async def test_consume_is_idempotent_from_our_side(google: PlayStoreFake, play: PlayStore) -> None:
    token = google.buy("coins_100")
    await play.consume("coins_100", token)
    await play.consume("coins_100", token)  # Google answers 400; the purchase says consumed
    found = await play.purchase("coins_100", token)
    assert (found.consumed, found.acknowledged) == (True, True)
    posts = [path for method, path in api_calls(google) if method == "POST"]
    assert len(posts) == 2 and all(path.endswith(":consume") for path in posts)


@pytest.mark.parametrize("kind", ["500", "429", "timeout-before", "timeout-after"])
async def test_a_consume_that_got_no_answer_is_asked_again(
    google: PlayStoreFake, play: PlayStore, kind: str
) -> None:
    token = google.buy("coins_100")
    google.fail(":consume", kind)
    with pytest.raises(StoreUnavailable):
        await play.consume("coins_100", token)
    await play.consume("coins_100", token)  # timeout-after: Google had consumed; still done
    assert (await play.purchase("coins_100", token)).consumed


async def test_a_pending_purchase_is_not_consumed_yet(
    google: PlayStoreFake, play: PlayStore
) -> None:
    token = google.buy("coins_100", pending=True)
    with pytest.raises(StoreUnavailable, match="pending"):
        await play.consume("coins_100", token)
    google.complete(token)
    await play.consume("coins_100", token)


async def test_a_voided_or_unknown_purchase_is_never_consumed(
    google: PlayStoreFake, play: PlayStore
) -> None:
    token = google.buy("coins_100")
    google.lapse(token)
    with pytest.raises(ReceiptInvalid) as caught:
        await play.consume("coins_100", token)
    assert caught.value.reason == REVOKED
    with pytest.raises(ReceiptInvalid) as caught:
        await play.consume("coins_100", "unknown.AO-J1Ozzzzzzzzzzzz")
    assert caught.value.reason == UNKNOWN


async def test_acknowledge_is_idempotent_and_keeps_the_payload(
    google: PlayStoreFake, play: PlayStore
) -> None:
    token = google.buy("coins_100")
    await play.acknowledge("coins_100", token, "purchase-42")
    await play.acknowledge("coins_100", token, "purchase-42")
    record = google.purchases[token]["resource"]
    assert (record["acknowledgementState"], record["consumptionState"]) == (1, 0)
    assert record["developerPayload"] == "purchase-42"
    await play.consume("coins_100", token)
    await play.acknowledge("coins_100", token)  # consumed is acknowledged too


# --- voided purchases -----------------------------------------------------------------------------


async def test_voided_purchases_are_paged_with_partial_refunds(
    google: PlayStoreFake, play: PlayStore
) -> None:
    # GIVEN a full refund, a chargeback, and a 5-unit purchase voided 1, then 1, then the rest
    google.page_size = 2
    whole = google.buy("coins_100")
    charged_back = google.buy("coins_350")
    multi = google.buy("coins_100", quantity=5)
    google.void(whole, reason=1, source=0)
    google.void(charged_back, reason=7, source=2)
    for units in (1, 1, None):
        google.void(multi, units)
    # WHEN the last day's voided purchases are read, every page
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    voided = await play.voided_purchases(start)
    # THEN all five entries, in three pages, partial ones with their units
    assert [(v.transaction_id, v.voided_quantity) for v in voided] == [
        (play_transaction_id(whole), None),
        (play_transaction_id(charged_back), None),
        (play_transaction_id(multi), 1),
        (play_transaction_id(multi), 1),
        (play_transaction_id(multi), None),
    ]
    assert (voided[0].reason, voided[0].source) == ("remorse", "user")
    assert (voided[1].reason, voided[1].source) == ("chargeback", "google")
    assert [v.partial for v in voided] == [False, False, True, True, False]
    assert voided[0].order_id and voided[0].voided_at and voided[0].purchased_at
    queries = [r["query"] for r in google.requests if "voidedpurchases" in r["path"]]
    assert len(queries) == 3
    assert queries[0]["type"] == "0" and queries[0]["includeQuantityBasedPartialRefund"] == "true"
    assert "startTime" in queries[0] and "token" not in queries[0]
    assert "token" in queries[1] and "startTime" not in queries[1]


async def test_voided_purchases_beyond_google_s_window_are_our_bug(play: PlayStore) -> None:
    with pytest.raises(ValueError, match="too far"):
        await play.voided_page(dt.datetime.now(dt.UTC) - dt.timedelta(days=40))


async def test_unacknowledged_purchases_lapse_into_voided(
    google: PlayStoreFake, play: PlayStore
) -> None:
    token = google.buy("coins_100")
    google.lapse(token)
    [voided] = await play.voided_purchases(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert (voided.reason, voided.source) == ("unacknowledged_purchase", "google")


# --- real-time developer notifications ------------------------------------------------------------


async def test_pushed_notifications_verify_and_decode(
    google: PlayStoreFake, play: PlayStore
) -> None:
    token = google.buy("coins_350", quantity=2)
    cases = [
        (google.notification("one_time", token), ONE_TIME_PURCHASED, False),
        (google.notification("one_time", token, notification_type=2), ONE_TIME_CANCELED, False),
        (google.notification("voided", token, partial=True), VOIDED, True),
        (google.notification("voided", token), VOIDED, False),
    ]
    seen = set()
    for note, kind, partial in cases:
        found = await play.verify_push(*google.push(note))
        assert (found.kind, found.partial) == (kind, partial)
        assert found.transaction_id == play_transaction_id(token)
        assert found.purchase_token == token and found.sent_at is not None
        seen.add(found.notification_id)
    assert len(seen) == len(cases)  # Pub/Sub's messageId: the deduplication key
    purchased = await play.verify_push(*google.push(cases[0][0]))
    assert purchased.product_id == "coins_350"
    voided = await play.verify_push(*google.push(cases[3][0]))
    assert (voided.subtype, voided.order_id) == (
        "one_time",
        google.purchases[token]["resource"]["orderId"],
    )
    test = await play.verify_push(*google.push(google.notification("test")))
    assert (test.kind, test.transaction_id) == (TEST_NOTIFICATION, None)


async def test_a_rotated_google_key_is_fetched(google: PlayStoreFake, play: PlayStore) -> None:
    await play.verify_push(*google.push(google.notification("test")))
    google.rotate_google_key()
    play._certs = (play._certs[0] - 120, play._certs[1])  # the cache is over a minute old
    await play.verify_push(*google.push(google.notification("test")))
    assert [r["path"] for r in google.requests].count("/oauth2/v1/certs") == 2


@pytest.mark.parametrize(
    "forge",
    [
        "no token",
        "not a jwt",
        "signed by another key",
        "other audience",
        "other service account",
        "email not verified",
        "other issuer",
        "expired",
        "tampered token",
    ],
)
async def test_forged_pushes_are_refused(
    google: PlayStoreFake, play: PlayStore, forge: str
) -> None:
    note = google.notification("test")
    authorization, body = google.push(note)
    if forge == "no token":
        authorization = ""
    elif forge == "not a jwt":
        authorization = "Bearer nonsense"
    elif forge == "signed by another key":
        authorization, body = google.push(note, key=_rsa())
    elif forge == "other audience":
        authorization, body = google.push(note, audience="https://evil.example/push")
    elif forge == "other service account":
        authorization, body = google.push(note, email="mallory@evil.iam.gserviceaccount.com")
    elif forge == "email not verified":
        authorization, body = google.push(note, email_verified=False)
    elif forge == "other issuer":
        authorization, body = google.push(note, issuer="https://evil.example")
    elif forge == "expired":
        authorization, body = google.push(note, expires_in=-3600)
    else:
        header, claims, signature = authorization.split(" ")[1].split(".")
        authorization = f"Bearer {header}.{claims}x.{signature}"
    with pytest.raises(ReceiptInvalid) as caught:
        await play.verify_push(authorization, body)
    assert caught.value.reason == FORGED


async def test_a_push_for_another_app_or_malformed_is_refused(
    google: PlayStoreFake, play: PlayStore
) -> None:
    other = google.notification("test", package="com.other.app")
    with pytest.raises(ReceiptInvalid) as caught:
        await play.verify_push(*google.push(other))
    assert caught.value.reason == WRONG_APP
    authorization, _ = google.push(google.notification("test"))
    for body in [b"", b"{}", b'{"message": {"data": "!!"}}', json.dumps({"message": []}).encode()]:
        with pytest.raises(ReceiptInvalid) as caught:
            await play.verify_push(authorization, body)
        assert caught.value.reason == MALFORMED


async def test_google_certificates_unreachable_is_unavailable(
    google: PlayStoreFake, play: PlayStore
) -> None:
    google.fail("/oauth2/v1/certs", "500")
    with pytest.raises(StoreUnavailable):
        await play.verify_push(*google.push(google.notification("test")))
    await play.verify_push(*google.push(google.notification("test")))


# --- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "429", "timeout-before", "timeout-after"])
async def test_read_faults_are_unavailable_and_a_retry_answers(
    google: PlayStoreFake, play: PlayStore, kind: str
) -> None:
    token = google.buy("coins_100")
    google.fail("/tokens/", kind)
    with pytest.raises(StoreUnavailable):
        await play.purchase("coins_100", token)
    assert (await play.purchase("coins_100", token)).state == PURCHASED


async def test_a_refused_service_account_is_unavailable_not_invalid(
    google: PlayStoreFake,
) -> None:
    info = google.service_account_info(f"{google.base_url}/token")  # type: ignore[attr-defined]
    info["private_key_id"] = "0" * 40  # a key Google does not hold (revoked, rotated)
    play = client(google, service_account_info=info)
    with pytest.raises(StoreUnavailable, match="no access token"):
        await play.purchase("coins_100", google.buy("coins_100"))


async def test_an_unreachable_google_is_unavailable(google: PlayStoreFake) -> None:
    play = client(google, api_base="http://127.0.0.1:9")
    with pytest.raises(StoreUnavailable):
        await play.purchase("coins_100", google.buy("coins_100"))


async def test_a_refunded_purchase_is_not_refunded_twice_in_its_mapping(
    google: PlayStoreFake, play: PlayStore
) -> None:
    # refundableQuantity is the state; the notifications and list entries are only triggers
    token = google.buy("coins_100", quantity=3)
    google.void(token, 1)
    for _ in range(2):
        found = await play.purchase("coins_100", token)
        assert (found.refunded_quantity, found.state) == (1, PURCHASED)
