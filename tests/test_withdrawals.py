"""Money out: earnings, withdrawal requests, the daily limit, settlement, and the payout list."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from handlers.payouts import make_handler
from infra.services import Services
from tests.clients import Client, claims_for
from tests.gifting import go_live, send, top_up

EARNINGS = """{ me { wallet { diamonds } earnings { diamonds
  cashValue { amount formatted } minimumWithdrawal { amount formatted }
  remainingToday { amount formatted } } } }"""
REQUEST = """mutation W($d: Int!, $key: String!) { requestWithdrawal(input: {diamonds: $d,
  idempotencyKey: $key}) { __typename
  ... on WithdrawalRequested { withdrawal { id diamonds amount { amount currency } status
                                            settledAt } wallet { diamonds } }
  ... on InsufficientDiamonds { required available }
  ... on BelowMinimum { minimum { formatted } }
  ... on DailyLimitExceeded { remaining { amount } }
  ... on InvalidInput { field } ... on UserError { message } } }"""
SETTLE = """mutation S($id: ID!, $outcome: WithdrawalOutcome!) {
  settleWithdrawal(input: {
  withdrawalId: $id, outcome: $outcome}) { __typename
  ... on WithdrawalSettled { withdrawal { id status settledAt } }
  ... on UserError { message } } }"""


async def earn(
    api: Client,
    creator: dict[str, Any],
    gifts: list[tuple[str, int]],
    coins_package: str = "coins-17500",
    packages: int = 1,
) -> None:
    """The creator goes live and a fan sends `gifts` (gift id, quantity)."""
    stream = await go_live(api, creator)
    fan = claims_for(f"fan-of-{creator['sub']}")
    await top_up(api, fan, packages, coins_package)
    for n, (gift, quantity) in enumerate(gifts):
        result = await send(api, fan, f"e{n}", gift=gift, stream=stream, quantity=quantity)
        assert result["__typename"] == "GiftSent", result


async def request(api: Client, user: dict[str, Any], diamonds: int, key: str) -> dict[str, Any]:
    result: dict[str, Any] = (await api.data(REQUEST, {"d": diamonds, "key": key}, user))[
        "requestWithdrawal"
    ]
    return result


async def test_earnings_defaults_and_rounding(api: Client) -> None:
    creator = claims_for("cora")
    await earn(api, creator, [("galaxy", 2), ("rose", 1)], "coins-3500")
    me = (await api.data(EARNINGS, user=creator))["me"]
    assert me["wallet"] == {"diamonds": 2001}
    assert me["earnings"] == {
        "diamonds": 2001,
        "cashValue": {"amount": 1000, "formatted": "$10.00"},  # 2001 // 2: never rounded up
        "minimumWithdrawal": {"amount": 1000, "formatted": "$10.00"},
        "remainingToday": {"amount": 100000, "formatted": "$1,000.00"},
    }


async def test_request_takes_diamonds_from_every_shard(api: Client, services: Services) -> None:
    # GIVEN diamonds spread over many earnings shards by many gifts
    creator = claims_for("cora")
    await earn(api, creator, [("concert", 1)] * 20 + [("rose", 1)] * 30, "coins-17500")
    shards = [s for s in (await services.earnings.shards([("cora", 32)]))["cora"] if s]
    assert len(shards) > 5
    # WHEN the creator withdraws all 10,030 diamonds
    result = await request(api, creator, 10_030, "all")
    # THEN one PENDING withdrawal of $50.15, and the wallet is empty
    assert result["__typename"] == "WithdrawalRequested"
    assert result["withdrawal"]["amount"] == {"amount": 5015, "currency": "USD"}
    assert result["withdrawal"]["status"] == "PENDING" and result["withdrawal"]["settledAt"] is None
    assert result["wallet"] == {"diamonds": 0}
    me = (
        await api.data(
            "{ me { earnings { remainingToday { amount } } transactions(first: 1) { "
            "edges { node { kind diamonds referenceId } } } withdrawals { edges { "
            "node { id status } } } } }",
            user=creator,
        )
    )["me"]
    assert me["earnings"]["remainingToday"] == {"amount": 100000 - 5015}
    assert me["transactions"]["edges"][0]["node"] == {
        "kind": "WITHDRAWAL",
        "diamonds": -10_030,
        "referenceId": result["withdrawal"]["id"],
    }
    assert me["withdrawals"]["edges"] == [
        {"node": {"id": result["withdrawal"]["id"], "status": "PENDING"}}
    ]


async def test_request_rules(api: Client, minor: dict[str, Any]) -> None:
    creator = claims_for("cora")
    await earn(api, creator, [("galaxy", 3)], "coins-3500")
    below = await request(api, creator, 1999, "a")
    assert below["__typename"] == "BelowMinimum" and below["minimum"] == {"formatted": "$10.00"}
    more = await request(api, creator, 5000, "b")
    assert (more["__typename"], more["required"], more["available"]) == (
        "InsufficientDiamonds",
        5000,
        3000,
    )
    assert (await request(api, minor, 2000, "c"))["__typename"] == "AgeRestricted"
    for bad in (0, -5):
        result = await request(api, creator, bad, "d")
        assert result["__typename"] == "InvalidInput" and result["field"] == "diamonds"
    assert (await api.data(EARNINGS, user=creator))["me"]["wallet"] == {"diamonds": 3000}


async def test_request_idempotency(api: Client) -> None:
    creator = claims_for("cora")
    await earn(api, creator, [("galaxy", 3)], "coins-3500")
    first = await request(api, creator, 2000, "k")
    again = await request(api, creator, 2000, "k")
    assert again["withdrawal"]["id"] == first["withdrawal"]["id"]
    assert (await request(api, creator, 2002, "k"))["__typename"] == "IdempotencyConflict"
    assert (await api.data(EARNINGS, user=creator))["me"]["wallet"] == {"diamonds": 1000}


async def test_concurrent_requests_race_the_daily_limit(api: Client, services: Services) -> None:
    # GIVEN a $50 daily limit and diamonds for eight $20 requests
    services.settings = dataclasses.replace(services.settings, daily_withdrawal_limit_cents=5000)
    creator = claims_for("cora")
    await earn(api, creator, [("interstellar", 3), ("galaxy", 2)], "coins-17500", 2)
    # WHEN eight requests of 4,000 diamonds ($20) race
    results = await asyncio.gather(*(request(api, creator, 4000, f"r{i}") for i in range(8)))
    # THEN exactly two land; the rest see the $10 left
    kinds = sorted(r["__typename"] for r in results)
    assert kinds == ["DailyLimitExceeded"] * 6 + ["WithdrawalRequested"] * 2
    assert {r["remaining"]["amount"] for r in results if "remaining" in r} == {1000}
    me = (await api.data(EARNINGS, user=creator))["me"]
    assert me["wallet"] == {"diamonds": 32_000 - 8000}
    assert me["earnings"]["remainingToday"]["amount"] == 1000


async def test_settlement(api: Client, admin: dict[str, Any], alice: dict[str, Any]) -> None:
    creator = claims_for("cora")
    await earn(api, creator, [("galaxy", 5)], "coins-17500")
    paid = (await request(api, creator, 2000, "p"))["withdrawal"]["id"]
    rejected = (await request(api, creator, 2000, "r"))["withdrawal"]["id"]
    # only admins settle
    forbidden = await api.gql(SETTLE, {"id": paid, "outcome": "PAID"}, alice)
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    done = (await api.data(SETTLE, {"id": paid, "outcome": "PAID"}, admin))["settleWithdrawal"]
    assert done["withdrawal"]["status"] == "PAID" and done["withdrawal"]["settledAt"]
    again = (await api.data(SETTLE, {"id": paid, "outcome": "PAID"}, admin))["settleWithdrawal"]
    assert again == done  # same outcome: nothing changes
    other = await api.data(SETTLE, {"id": paid, "outcome": "REJECTED"}, admin)
    assert other["settleWithdrawal"]["__typename"] == "InvalidState"
    unknown = await api.data(SETTLE, {"id": "wdr_nope", "outcome": "PAID"}, admin)
    assert unknown["settleWithdrawal"]["__typename"] == "NotFound"
    # a rejection returns the diamonds and frees the day's limit
    back = await api.data(SETTLE, {"id": rejected, "outcome": "REJECTED"}, admin)
    assert back["settleWithdrawal"]["withdrawal"]["status"] == "REJECTED"
    me = (
        await api.data(
            "{ me { wallet { diamonds } earnings { remainingToday { amount } } "
            "transactions(first: 1) { edges { node { kind diamonds } } } } }",
            user=creator,
        )
    )["me"]
    assert me["wallet"] == {"diamonds": 5000 - 2000}
    assert me["earnings"]["remainingToday"] == {"amount": 100000 - 1000}
    assert me["transactions"]["edges"][0]["node"] == {
        "kind": "WITHDRAWAL_RETURNED",
        "diamonds": 2000,
    }


@pytest.mark.parametrize("outcomes", [("PAID", "REJECTED"), ("REJECTED", "REJECTED")])
async def test_concurrent_settlements(
    api: Client, admin: dict[str, Any], outcomes: tuple[str, str]
) -> None:
    creator = claims_for("cora")
    await earn(api, creator, [("galaxy", 2)], "coins-3500")
    withdrawal = (await request(api, creator, 2000, "w"))["withdrawal"]["id"]
    results = await asyncio.gather(
        *(api.data(SETTLE, {"id": withdrawal, "outcome": o}, admin) for o in outcomes * 4)
    )
    settled = [r["settleWithdrawal"] for r in results]
    statuses = {
        s["withdrawal"]["status"] for s in settled if s["__typename"] == "WithdrawalSettled"
    }
    assert len(statuses) == 1  # exactly one outcome won
    winner = statuses.pop()
    for outcome, result in zip(outcomes * 4, settled, strict=True):
        expected = "WithdrawalSettled" if outcome == winner else "InvalidState"
        assert result["__typename"] == expected
    diamonds = (await api.data(EARNINGS, user=creator))["me"]["wallet"]["diamonds"]
    assert diamonds == (2000 if winner == "REJECTED" else 0)  # returned once at most


async def test_request_call_counts(api: Client, calls: Any) -> None:
    creator = claims_for("cora")
    await earn(api, creator, [("galaxy", 3)], "coins-3500")
    calls.reset()
    await api.data(
        'mutation { requestWithdrawal(input: {diamonds: 2000, idempotencyKey: "c"}) '
        "{ __typename } }",
        user=creator,
    )
    # the balance read that plans which shards to take from, then one transaction
    assert calls.counts() == {"GetItem": 1, "BatchGetItem": 1, "TransactWriteItems": 1}


async def test_payout_review_list(api: Client, admin: dict[str, Any], services: Services) -> None:
    creators = [claims_for(f"c{i}") for i in range(3)]
    ids = []
    for creator in creators:
        await earn(api, creator, [("galaxy", 2)], "coins-3500")
        ids.append((await request(api, creator, 2000, "w"))["withdrawal"]["id"])
    await api.data(SETTLE, {"id": ids[1], "outcome": "PAID"}, admin)
    handler = make_handler(services)
    first = await asyncio.to_thread(handler, {"limit": 1}, None)
    assert [w["id"] for w in first["withdrawals"]] == [ids[0]]
    assert first["withdrawals"][0] == {
        **first["withdrawals"][0],
        "accountId": "c0",
        "diamonds": 2000,
        "amount": 1000,
        "currency": "USD",
    }
    second = await asyncio.to_thread(handler, {"limit": 1, "cursor": first["cursor"]}, None)
    assert [w["id"] for w in second["withdrawals"]] == [ids[2]] and second["cursor"] is None
    assert "error" in await asyncio.to_thread(handler, {"limit": 0}, None)
    assert "error" in await asyncio.to_thread(handler, {"cursor": "junk"}, None)


QUEUE = """query Q($first: Int, $after: String) { pendingWithdrawals(first: $first, after: $after) {
  edges { cursor node { id status amount { amount } } } pageInfo { hasNextPage endCursor } } }"""


async def test_pending_withdrawals_page_the_review_queue_oldest_first(
    api: Client, admin: dict[str, Any]
) -> None:
    # GIVEN five pending withdrawals of three creators, one of them paid
    ids = []
    for i in range(3):
        creator = claims_for(f"c{i}")
        await earn(api, creator, [("galaxy", 5)], "coins-7000")
        ids.append((await request(api, creator, 2000, "w1"))["withdrawal"]["id"])
        if i < 2:
            ids.append((await request(api, creator, 2000, "w2"))["withdrawal"]["id"])
    await api.data(SETTLE, {"id": ids[1], "outcome": "PAID"}, admin)
    pending = [i for i in ids if i != ids[1]]
    # WHEN an admin pages the queue two at a time THEN every pending one, once, oldest first
    seen, after = [], None
    while True:
        page = (await api.data(QUEUE, {"first": 2, "after": after}, admin))["pendingWithdrawals"]
        seen += [e["node"]["id"] for e in page["edges"]]
        assert {e["node"]["status"] for e in page["edges"]} <= {"PENDING"}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == sorted(pending)
    # AND it is for admins only
    refused = await api.gql(QUEUE, {"first": 2}, claims_for("c0"))
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_review_queue_shows_the_creator_and_signals_without_extra_reads(
    api: Client, admin: dict[str, Any], calls: Any
) -> None:
    # GIVEN two creators paid by brand-new accounts (every account here is new)
    for name in ("c0", "c1"):
        creator = claims_for(name)
        await earn(api, creator, [("galaxy", 3)], "coins-3500")
        await request(api, creator, 2000, "w")
    document = """{ pendingWithdrawals { edges { node { account { id displayName }
      accountRestricted payoutAccountStatus
      review { earnedDiamonds fromNewAccountsDiamonds newAccountsPercent
      restrictedAccountsPercent accountCreatedAt } } } } }"""
    calls.reset()
    queue = (await api.data(document, user=admin))["pendingWithdrawals"]["edges"]
    # THEN each entry names its creator and its signals, for one Query and one batched read
    assert [e["node"]["account"]["id"] for e in queue] == ["c0", "c1"]
    review = queue[0]["node"]["review"]
    assert (review["earnedDiamonds"], review["fromNewAccountsDiamonds"]) == (3000, 3000)
    assert (review["newAccountsPercent"], review["restrictedAccountsPercent"]) == (100, 0)
    assert review["accountCreatedAt"] and queue[0]["node"]["accountRestricted"] is False
    assert queue[0]["node"]["payoutAccountStatus"] == "NOT_CONNECTED"  # paid by hand here
    assert calls.counts() == {"Query": 1, "BatchGetItem": 1}
    # AND the creator sees their own withdrawal without the reviewer's signals
    own = "{ me { withdrawals { edges { node { review { earnedDiamonds } } } } } }"
    mine = (await api.data(own, user=claims_for("c0")))["me"]["withdrawals"]["edges"]
    assert mine[0]["node"]["review"] is None
