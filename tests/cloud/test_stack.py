"""The deployed stack, end to end, in the real configuration (PaymentProvider=stripe, the keys
in Secrets Manager): through the HTTP API and its JWT authorizer, the WebSocket API with a
third-party graphql-transport-ws client, the functions under their own IAM roles.

The tests run in file order: the last one redeploys without a payment provider.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra.local_cloud import BUNDLE, ROOT
from tests.cloud.conftest import Cloud, http
from tests.stripe_fake import SECRET_KEY

pytestmark = pytest.mark.cloud

BUY = """mutation B($input: PurchaseCoinsInput!) { purchaseCoins(input: $input) {
  __typename ... on CoinsPurchased { purchase { id coins } wallet { coins } }
  ... on UserError { message } } }"""
GIFT = """mutation G($input: SendGiftInput!) { sendGift(input: $input) {
  __typename ... on GiftSent { transfer { id coins } wallet { coins } }
  ... on UserError { message } } }"""
START = """mutation { startLiveStream(input: {title: "cloud"}) {
  __typename ... on LiveStreamStarted { stream { id } } } }"""
END = """mutation E($id: ID!) { endLiveStream(input: {streamId: $id}) { __typename } }"""
FEED = """subscription F($id: ID!) {
  giftFeed(streamId: $id) { id coins gift { id } sender { id } } }"""


def buy(
    cloud: Cloud, user: str, package: str, key: str, token: str = "pm_card_visa"
) -> dict[str, Any]:
    """Buy a package; `token` is a Stripe test PaymentMethod (`tok_visa` on a sandbox stack)."""
    variables = {"input": {"packageId": package, "paymentToken": token, "idempotencyKey": key}}
    result: dict[str, Any] = cloud.data(user, BUY, variables)["purchaseCoins"]
    return result


def gift(cloud: Cloud, user: str, stream: str, gift_id: str, key: str, quantity: int = 1) -> Any:
    variables = {
        "input": {
            "giftId": gift_id,
            "streamId": stream,
            "quantity": quantity,
            "idempotencyKey": key,
        }
    }
    return cloud.data(user, GIFT, variables)["sendGift"]


def go_live(cloud: Cloud, user: str) -> str:
    started = cloud.data(user, START)["startLiveStream"]
    assert started["__typename"] == "LiveStreamStarted", started
    return str(started["stream"]["id"])


def item(cloud: Cloud, logical: str, key: dict[str, str]) -> dict[str, Any]:
    """One item, read with the account's root credentials (what the API cannot show)."""
    from infra.dynamo import from_item, to_item

    found = cloud.cloud.client("dynamodb").get_item(
        TableName=cloud.table(logical), Key=to_item(key)
    )
    return from_item(found.get("Item") or {})


def test_the_first_request_after_warming_then_warm_ones(cloud: Cloud) -> None:
    started = time.monotonic()
    health = http(cloud.stack.health_url)
    cloud.timings["first"] = time.monotonic() - started
    assert (health.status, health.body) == (200, {"status": "ok"})
    warm = []
    for _ in range(5):
        started = time.monotonic()
        catalog = cloud.data(None, "{ coinPackages { id } gifts { id } }")
        warm.append(time.monotonic() - started)
    cloud.timings["warm"] = statistics.median(warm)
    assert catalog["coinPackages"][0]["id"] == "coins-70"


def test_a_missing_or_bad_token_gets_the_authorizers_401(cloud: Cloud) -> None:
    me = {"query": "{ me { wallet { coins } } }"}
    forged = _forged_token(cloud)
    for token in (None, "not-a-jwt", forged):
        reply = http(cloud.stack.graphql_url, me, token)
        assert reply.status == 401, (token, reply.status, reply.body)
    # The public endpoint has no authorizer: `me` needs a token there.
    body = cloud.gql(None, me["query"])
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert cloud.data("vic", me["query"])["me"]["wallet"]["coins"] == 0


def _forged_token(cloud: Cloud) -> str:
    """A well-formed RS256 ID token for the pool, signed by a key that is not the pool's."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {
        "sub": "mallory",
        "iss": f"https://cognito-idp.us-east-1.amazonaws.com/{cloud.stack.outputs['UserPoolId']}",
        "aud": cloud.stack.outputs["UserPoolClientId"],
        "token_use": "id",
        "birthdate": "1990-01-01",
        "cognito:groups": ["admin"],
        "exp": int(time.time()) + 600,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "forged"})


def test_the_bundle_imports_with_the_engines_packages_out_of_reach(tmp_path: Path) -> None:
    """ministack runs the functions on its own interpreter with its own packages importable
    (graphql-core 3.2 among them): the bundle must bring everything it needs itself."""
    with zipfile.ZipFile(BUNDLE) as bundle:
        bundle.extractall(tmp_path)
        names = set(bundle.namelist())
    assert "handlers/__pycache__/lambda_api.cpython-311.pyc" in names  # shipped bytecode
    assert not any(n.startswith(("tests/", "handlers/static/")) for n in names)
    code = (
        f"import sys; sys.path[:0] = [{str(tmp_path)!r}]; "
        "import handlers.lambda_api, handlers.gift_feed, handlers.payouts, jwt, graphql; "
        "print(graphql.__version__, [p for p in sys.path if 'site-packages' in p])"
    )
    engine_python = ROOT / ".venv-engine" / "bin" / "python"
    out = subprocess.run(  # -I -S: no site-packages, no environment
        [str(engine_python), "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("3.3.") and out.rstrip().endswith("[]"), out


def test_buy_gift_withdraw_settle_refund(cloud: Cloud) -> None:
    assert cloud.stripe is not None
    confirmed, charges = len(_confirms(cloud)), len(cloud.stripe.charges)
    # GIVEN Vic buys coins twice through Stripe (one to be refunded), and a minor may not
    bought = buy(cloud, "vic", "coins-3500", "buy-1")
    assert bought["__typename"] == "CoinsPurchased" and bought["wallet"]["coins"] == 3500
    assert buy(cloud, "vic", "coins-3500", "buy-1")["purchase"]["id"] == bought["purchase"]["id"]
    refundable = buy(cloud, "vic", "coins-70", "buy-2")["purchase"]["id"]
    assert buy(cloud, "kid", "coins-70", "kid-1")["__typename"] == "AgeRestricted"
    # the GraphQL function called Stripe with the key it read from Secrets Manager, once each
    assert len(_confirms(cloud)) == confirmed + 2 and len(cloud.stripe.charges) == charges + 2
    assert {r["authorization"] for r in cloud.stripe.requests} == {f"Bearer {SECRET_KEY}"}
    # WHEN Cora goes live and Vic sends her two Galaxies
    stream = go_live(cloud, "cora")
    sent = gift(cloud, "vic", stream, "galaxy", "g-1", quantity=2)
    assert sent["__typename"] == "GiftSent" and sent["wallet"]["coins"] == 1570
    totals = cloud.data(
        None,
        """query S($id: ID!) {
          liveStream(id: $id) { coinsReceived topGifters(first: 3) { coins } } }""",
        {"id": stream},
    )["liveStream"]
    assert totals == {"coinsReceived": 2000, "topGifters": [{"coins": 2000}]}
    # AND Cora withdraws her 2,000 diamonds ($10.00)
    withdrawal = cloud.data(
        "cora",
        """mutation { requestWithdrawal(input: {diamonds: 2000, idempotencyKey: "wd-1"}) {
          __typename
          ... on WithdrawalRequested { withdrawal { id status } wallet { diamonds } } } }""",
    )["requestWithdrawal"]
    assert withdrawal["withdrawal"]["status"] == "PENDING", withdrawal
    wdr = withdrawal["withdrawal"]["id"]
    # AND the payouts function (an operator invokes it) lists it, in a Stripe deployment
    queue = cloud.invoke("PayoutsFunction", {"limit": 50})
    assert wdr in [w["id"] for w in queue["withdrawals"]], queue
    settle = """mutation S($id: ID!) { settleWithdrawal(input: {withdrawalId: $id, outcome: PAID}) {
      __typename ... on WithdrawalSettled { withdrawal { status settledAt } } } }"""
    # THEN only an admin settles it, and the item says which admin
    forbidden = cloud.gql("vic", settle, {"id": wdr})
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    settled = cloud.data("root", settle, {"id": wdr})["settleWithdrawal"]
    assert settled["withdrawal"]["status"] == "PAID"
    stored = item(cloud, "WithdrawalsTable", {"id": wdr})
    assert stored["settledBy"] == cloud.users["root"].sub and stored["settledAt"]
    # AND an admin refunds the unspent purchase: the coins go back, the item says who
    refunded = cloud.data(
        "root",
        """mutation R($id: ID!) { refundPurchase(input: {purchaseId: $id}) {
          __typename ... on PurchaseRefunded { purchase { status } } } }""",
        {"id": refundable},
    )["refundPurchase"]
    assert refunded == {"__typename": "PurchaseRefunded", "purchase": {"status": "REFUNDED"}}
    assert (
        item(cloud, "PurchasesTable", {"id": refundable})["refundedBy"] == cloud.users["root"].sub
    )
    assert cloud.data("vic", "{ me { wallet { coins } } }")["me"]["wallet"]["coins"] == 1500
    assert [r["amount"] for r in cloud.stripe.refunds.values()] == [99]  # the 70 coins' price
    # AND catalog edits record their admin too
    cloud.data(
        "root",
        """mutation { upsertGift(input: {id: "comet", name: "Comet", coins: 3, diamonds: 3,
          active: true}) { id } }""",
    )
    comet = item(cloud, "CatalogTable", {"kind": "GIFT", "id": "comet"})
    assert comet["updatedBy"] == cloud.users["root"].sub
    assert (
        cloud.data("cora", END, {"id": stream})["endLiveStream"]["__typename"] == "LiveStreamEnded"
    )


def _confirms(cloud: Cloud) -> list[dict[str, Any]]:
    assert cloud.stripe is not None
    return [r for r in cloud.stripe.requests if r["path"].endswith("/confirm")]


async def _watch(
    cloud: Cloud, stream: str, received: list[tuple[float, dict[str, Any]]], token: str | None
) -> None:
    """Subscribe with gql (a third-party client) until the feed completes."""
    from gql import Client, gql
    from gql.transport.websockets import WebsocketsTransport

    transport = WebsocketsTransport(
        url=cloud.stack.gift_feed_url,
        # The local cloud does not echo the negotiated subprotocol (AWS does, from $connect's
        # answer): name the one we speak rather than let gql fall back to the legacy one.
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"Authorization": f"Bearer {token}"} if token else {},
        connect_timeout=30,
        ack_timeout=30,
    )
    request = gql(FEED)
    request.variable_values = {"id": stream}
    async with Client(transport=transport, fetch_schema_from_transport=False) as session:
        async for result in session.subscribe(request):
            received.append((time.monotonic(), result["giftFeed"]))


def _subscribers(cloud: Cloud) -> int:
    """Subscriptions stored (the table also keeps each stream's counts and digest state)."""
    table = cloud.table("SubscriptionsTable")
    answer = cloud.cloud.client("dynamodb").scan(
        TableName=table, Select="COUNT", FilterExpression="attribute_exists(connectionId)"
    )
    return int(answer["Count"])


async def _wait_for_subscribers(cloud: Cloud, count: int, tasks: list[asyncio.Task[None]]) -> None:
    deadline = time.monotonic() + 60
    while _subscribers(cloud) < count:
        for task in tasks:
            if task.done():
                task.result()  # a subscriber that failed says why
        assert time.monotonic() < deadline, "subscriptions were not stored"
        await asyncio.sleep(0.1)


async def test_the_gift_feed_over_websocket(cloud: Cloud) -> None:
    # GIVEN two viewers of Cora's stream (one anonymous, one signed in) and one of Wen's
    mine, other = go_live(cloud, "cora"), go_live(cloud, "wen")
    buy(cloud, "vic", "coins-350", "feed-buy")
    before = _subscribers(cloud)
    watched: list[list[tuple[float, dict[str, Any]]]] = [[], [], []]
    tasks = [
        asyncio.create_task(_watch(cloud, mine, watched[0], None)),
        asyncio.create_task(_watch(cloud, mine, watched[1], cloud.users["wen"].id_token)),
        asyncio.create_task(_watch(cloud, other, watched[2], None)),
    ]
    await _wait_for_subscribers(cloud, before + 3, tasks)
    # WHEN Vic sends three gifts to Cora's stream
    sent, sent_at = [], []
    for i, gift_id in enumerate(("rose", "panda", "rose")):
        result = await asyncio.to_thread(gift, cloud, "vic", mine, gift_id, f"feed-{i}")
        sent_at.append(time.monotonic())
        sent.append(result["transfer"]["id"])
    # AND Cora ends her stream
    await asyncio.to_thread(cloud.data, "cora", END, {"id": mine})
    await asyncio.wait_for(asyncio.gather(tasks[0], tasks[1]), timeout=60)
    # THEN each of her viewers got every gift (ids are time-ordered), and the feed completed
    for received in watched[:2]:
        ids = [g["id"] for _, g in received]
        assert sorted(ids) == sent, (ids, sent)
        assert {g["sender"]["id"] for _, g in received} == {cloud.users["vic"].sub}
    # AND Wen's viewer got none of them
    await asyncio.to_thread(cloud.data, "wen", END, {"id": other})
    await asyncio.wait_for(tasks[2], timeout=60)
    assert watched[2] == []
    latencies = [
        (at - sent_at[sent.index(g["id"])]) * 1000 for received in watched[:2] for at, g in received
    ]
    cloud.timings["feed_latency_ms_median"] = statistics.median(latencies)
    cloud.timings["feed_latency_ms_max"] = max(latencies)
    assert _subscribers(cloud) == before  # completed subscriptions are removed


def test_a_purchase_that_needs_authentication_is_credited_by_the_signed_webhook(
    cloud: Cloud,
) -> None:
    """The webhook's signing secret also comes from the Secrets Manager secret."""
    assert cloud.stripe is not None
    # GIVEN a card that needs 3-D Secure
    variables = {
        "input": {
            "packageId": "coins-350",
            "paymentToken": "pm_card_threeDSecure2Required",
            "idempotencyKey": "3ds-1",
        }
    }
    document = BUY.replace(
        "... on UserError", "... on PaymentActionRequired { purchaseId }\n  ... on UserError"
    )
    action = cloud.data("wen", document, variables)["purchaseCoins"]
    assert action["__typename"] == "PaymentActionRequired", action
    coins = cloud.data("wen", "{ me { wallet { coins } } }")["me"]["wallet"]["coins"]
    # WHEN the buyer authenticates and Stripe delivers payment_intent.succeeded, signed
    (intent,) = [i for i in cloud.stripe.intents.values() if i["status"] == "requires_action"]
    payload, signature = cloud.stripe.event(
        "payment_intent.succeeded", cloud.stripe.authenticate(intent["id"])
    )
    forged = http_raw(cloud.stack.webhook_url, payload, "t=1,v1=00")
    delivered = http_raw(cloud.stack.webhook_url, payload, signature)
    # THEN a forged signature is refused, the signed delivery credits the coins once
    assert (forged, delivered) == (400, 200)
    after = cloud.data("wen", "{ me { wallet { coins } } }")["me"]["wallet"]["coins"]
    assert after == coins + 350


def http_raw(url: str, body: bytes, signature: str) -> int:
    """POST a webhook delivery as Stripe does: its status."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 - 127.0.0.1
    request.add_header("Content-Type", "application/json")
    request.add_header("Stripe-Signature", signature)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - 127.0.0.1
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


async def test_a_bad_token_is_refused_in_a_way_the_client_can_read(cloud: Cloud) -> None:
    """API Gateway cannot send graphql-transport-ws's 4403: the connection is acknowledged, the
    subscription answered UNAUTHENTICATED, then closed. gql raises it as a query error."""
    from gql.transport.exceptions import TransportQueryError

    stream = go_live(cloud, "cora")
    for token in ("not-a-token", _forged_token(cloud)):
        with pytest.raises(TransportQueryError) as refused:
            await asyncio.wait_for(_watch(cloud, stream, [], token), timeout=60)
        assert refused.value.errors, refused.value
        assert refused.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
    cloud.data("cora", END, {"id": stream})


def test_each_function_may_do_only_what_it_does(cloud: Cloud) -> None:
    """The suite above ran every path with IAM enforced; here, what each role must not do."""
    iam, lam = cloud.cloud.client("iam"), cloud.cloud.client("lambda")
    arn = {
        name: cloud.cloud.client("dynamodb").describe_table(TableName=cloud.table(name))["Table"][
            "TableArn"
        ]
        for name in ("LedgerTable", "AccountsTable", "WithdrawalsTable", "ConnectionsTable")
    }

    def decisions(function: str, actions: list[str], resource: str) -> dict[str, str]:
        role = lam.get_function(FunctionName=cloud.table(function))["Configuration"]["Role"]
        result = iam.simulate_principal_policy(
            PolicySourceArn=role, ActionNames=actions, ResourceArns=[resource]
        )["EvaluationResults"]
        return {r["EvalActionName"]: r["EvalDecision"] for r in result}

    ledger = decisions(
        "GraphQLFunction",
        [
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:Scan",
        ],
        arn["LedgerTable"],
    )
    assert ledger == {
        "dynamodb:PutItem": "allowed",
        "dynamodb:Query": "allowed",
        "dynamodb:UpdateItem": "implicitDeny",
        "dynamodb:DeleteItem": "implicitDeny",
        "dynamodb:Scan": "implicitDeny",
    }
    assert set(
        decisions("GraphQLFunction", ["dynamodb:PutItem"], arn["ConnectionsTable"]).values()
    ) == {"implicitDeny"}
    for function in (
        "GiftFeedSocketFunction",
        "GiftFeedFanOutFunction",
        "GiftFeedPostFunction",
        "PayoutsFunction",
    ):
        found = decisions(
            function, ["dynamodb:PutItem", "dynamodb:UpdateItem"], arn["AccountsTable"]
        )
        assert set(found.values()) == {"implicitDeny"}, (function, found)
    payouts = decisions(
        "PayoutsFunction", ["dynamodb:GetItem", "dynamodb:Query"], arn["WithdrawalsTable"]
    )
    assert set(payouts.values()) == {"implicitDeny"}  # only the pending index
    # The Stripe secret: the GraphQL function reads it (the purchases above), no other may
    secret = {
        function: decisions(function, ["secretsmanager:GetSecretValue"], cloud.secret_arn)
        for function in (
            "GraphQLFunction",
            "GiftFeedSocketFunction",
            "GiftFeedFanOutFunction",
            "GiftFeedPostFunction",
            "PayoutsFunction",
        )
    }
    assert {f: d["secretsmanager:GetSecretValue"] for f, d in secret.items()} == {
        "GraphQLFunction": "allowed",
        "GiftFeedSocketFunction": "implicitDeny",
        "GiftFeedFanOutFunction": "implicitDeny",
        "GiftFeedPostFunction": "implicitDeny",
        "PayoutsFunction": "implicitDeny",
    }
    # No managed policy but basic execution (tracing is off): as the SAM transform ran here
    for function in secret:
        role = lam.get_function(FunctionName=cloud.table(function))["Configuration"]["Role"]
        attached = iam.list_attached_role_policies(RoleName=role.rsplit("/", 1)[1])
        assert [p["PolicyArn"] for p in attached["AttachedPolicies"]] == [
            "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        ], function


def test_without_a_payment_provider_purchases_are_refused(cloud: Cloud) -> None:
    # GIVEN the stack redeployed with PaymentProvider at its default (none)
    cloud.cloud.update(cloud.stack, {"PaymentProvider": "none"})
    coins = cloud.data("wen", "{ me { wallet { coins } } }")["me"]["wallet"]["coins"]
    # WHEN Wen tries to buy coins
    variables = {
        "input": {"packageId": "coins-70", "paymentToken": "tok_visa", "idempotencyKey": "n-1"}
    }
    body = cloud.gql("wen", BUY, variables)
    # THEN a clear error, and nothing changed: no coins, no idempotency record
    assert body["errors"][0]["extensions"]["code"] == "PAYMENTS_NOT_CONFIGURED", body
    assert cloud.data("wen", "{ me { wallet { coins } } }")["me"]["wallet"]["coins"] == coins
    key = f"{cloud.users['wen'].sub}#purchaseCoins#n-1"
    assert item(cloud, "IdempotencyTable", {"key": key}) == {}
