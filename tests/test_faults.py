"""Faults on every money path: contention, throttles, 500s, timeouts before and after a write,
and an ambiguous payment provider. None of them may become a user error or be remembered
under an idempotency key; what the code cannot absorb is TRY_AGAIN, and a retry with the same
key finishes. (The seeded simulator in tests/sim mixes all of these at random.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from infra.config import Settings
from infra.payments import ProviderUnavailable, RefundRefused
from infra.services import Services
from tests.clients import Client, claims_for
from tests.conftest import scan
from tests.faults import (
    TRANSACT,
    Faults,
    Overlaps,
    conflict_on_table,
    error,
    timeout_after,
    timeout_before,
    touches,
)
from tests.gifting import END, PUBLISH, START, go_live, send, top_up
from tests.test_events import JOIN, create
from tests.test_purchases import PURCHASE, buy, coins_of
from tests.test_refunds import REFUND, refund
from tests.test_withdrawals import REQUEST, earn, request

START_KEYED = """mutation S($t: String!, $k: String) { startLiveStream(input: {title: $t,
  idempotencyKey: $k}) { __typename ... on LiveStreamStarted { stream { id } }
  ... on UserError { message } } }"""
END_KEYED = """mutation E($id: ID!, $k: String) { endLiveStream(input: {streamId: $id,
  idempotencyKey: $k}) { __typename ... on LiveStreamEnded { stream { id status endedAt } }
  ... on UserError { message } } }"""
PUBLISH_KEYED = """mutation V($t: String!, $k: String) { publishVideo(input: {title: $t,
  idempotencyKey: $k}) { __typename ... on VideoPublished { video { id } } } }"""
CREATE_KEYED = """mutation C($t: String!, $k: String) { createEvent(input: {title: $t,
  entryCoins: 10, idempotencyKey: $k}) { __typename ... on EventCreated { event { id } } } }"""
PERSISTENT = 10_000  # more faults than any deadline lets a request retry


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Settings:
    # A short retry budget keeps the persistent-fault cases fast; the rules are the same.
    budget = 0.3 if request.node.get_closest_marker("short_budget") else 4.0
    if request.node.get_closest_marker("long_budget"):
        budget = 20.0  # a crowd on serialised moto, on a loaded machine: not about deadlines
    return Settings(table_prefix="test-", catalog_cache_seconds=60, retry_budget_seconds=budget)


@pytest.fixture
def faults(services: Services) -> Faults:
    return Faults(services.dynamo)


def try_again(result: dict[str, Any]) -> bool:
    errors = result.get("errors") or []
    return len(errors) == 1 and errors[0]["extensions"] == {"code": "TRY_AGAIN"}


def no_failed_records(services: Services) -> None:
    """A fault is never remembered under a key."""
    assert [r for r in scan(services, "idempotency") if r["status"] == "FAILED"] == []


# --- Defect 1: a transaction conflict is contention, not a failed condition ---------------

Setup = Callable[[Client], Awaitable[Callable[[], Awaitable[dict[str, Any]]]]]


async def _gift_setup(api: Client) -> Callable[[], Awaitable[dict[str, Any]]]:
    stream = await go_live(api, claims_for("cora"))
    fan = claims_for("fan")
    await top_up(api, fan)
    doc = (
        "mutation G($i: SendGiftInput!) { sendGift(input: $i) { __typename "
        "... on GiftSent { transfer { id } wallet { coins } } ... on UserError { message } } }"
    )
    variables = {"i": {"giftId": "panda", "streamId": stream, "idempotencyKey": "g-1"}}
    return lambda: api.gql(doc, variables, fan)


async def _join_setup(api: Client) -> Callable[[], Awaitable[dict[str, Any]]]:
    event = await create(api, claims_for("host"), coins=30)
    fan = claims_for("fan")
    await top_up(api, fan)
    return lambda: api.gql(JOIN, {"id": event, "key": "j-1"}, fan)


async def _withdraw_setup(api: Client) -> Callable[[], Awaitable[dict[str, Any]]]:
    creator = claims_for("cora")
    await earn(api, creator, [("galaxy", 3)], "coins-3500")
    return lambda: api.gql(REQUEST, {"d": 2000, "key": "w-1"}, creator)


async def _refund_setup(api: Client) -> Callable[[], Awaitable[dict[str, Any]]]:
    buyer, admin = claims_for("buyer"), claims_for("root", admin=True)
    purchase = (await buy(api, buyer, "p-1", "coins-350"))["purchase"]["id"]
    return lambda: api.gql(REFUND, {"id": purchase}, admin)


async def _end_setup(api: Client) -> Callable[[], Awaitable[dict[str, Any]]]:
    creator = claims_for("cora")
    stream = await go_live(api, creator)
    return lambda: api.gql(END_KEYED, {"id": stream, "k": "end-1"}, creator)


async def _purchase_setup(api: Client) -> Callable[[], Awaitable[dict[str, Any]]]:
    variables = {
        "input": {"packageId": "coins-70", "paymentToken": "tok_visa", "idempotencyKey": "b"}
    }
    return lambda: api.gql(PURCHASE, variables, claims_for("buyer"))


# (setup, the table whose action gets the conflict, the success typename)
PATHS: dict[str, tuple[Setup, str, str]] = {
    "gift-on-stream-shard": (_gift_setup, "streams", "GiftSent"),
    "gift-on-sender": (_gift_setup, "accounts", "GiftSent"),
    "join-on-membership": (_join_setup, "events", "EventJoined"),
    "withdrawal-on-daily-total": (_withdraw_setup, "withdrawals", "WithdrawalRequested"),
    "refund-hold": (_refund_setup, "accounts", "PurchaseRefunded"),
    "end-stream": (_end_setup, "streams", "LiveStreamEnded"),
    "purchase-credit": (_purchase_setup, "accounts", "CoinsPurchased"),
}


def _typename(result: dict[str, Any]) -> str:
    assert not result.get("errors"), result
    (payload,) = result["data"].values()
    name: str = payload["__typename"]
    return name


@pytest.mark.parametrize("path", PATHS)
async def test_a_few_conflicts_are_retried(
    api: Client, services: Services, faults: Faults, path: str
) -> None:
    setup, table, success = PATHS[path]
    call = await setup(api)
    # GIVEN DynamoDB cancels the next three transactions on that table for contention
    faults.on(TRANSACT, conflict_on_table(table), times=3, when=touches(table))
    # WHEN the mutation runs THEN it lands as on a quiet machine
    assert _typename(await call()) == success
    assert faults.injected == 3
    no_failed_records(services)


@pytest.mark.short_budget
@pytest.mark.parametrize("path", PATHS)
async def test_persistent_conflicts_are_try_again_and_the_retry_lands(
    api: Client, services: Services, faults: Faults, path: str
) -> None:
    setup, table, success = PATHS[path]
    call = await setup(api)
    faults.on(TRANSACT, conflict_on_table(table), times=PERSISTENT, when=touches(table))
    # WHEN contention outlasts the request's deadline THEN a retryable error, not a user error
    assert try_again(await call())
    no_failed_records(services)
    # AND once it passes, the retry with the same key lands, and a second replays it
    faults.clear()
    first = await call()
    assert _typename(first) == success
    assert await call() == first


@pytest.mark.parametrize(
    "fault",
    [
        error("ThrottlingException"),
        error("ProvisionedThroughputExceededException"),
        error("InternalServerError"),
        timeout_before,
        timeout_after,
    ],
    ids=["throttle", "throughput", "500", "timeout-before", "timeout-after-commit"],
)
@pytest.mark.parametrize("operation", ["put_item", TRANSACT, "get_item"])
async def test_purchase_absorbs_each_fault_at_each_call(
    api: Client,
    alice: dict[str, Any],
    services: Services,
    faults: Faults,
    fault: Any,
    operation: str,
) -> None:
    # GIVEN one fault on the claim (put_item), the credit (transaction) or the replay read
    await buy(api, alice, "warm")
    faults.on(operation, fault, times=1)
    first = await buy(api, alice, "k")
    again = await buy(api, alice, "k")
    # THEN charged once, credited once, and the replay has the same purchase
    assert first["__typename"] == "CoinsPurchased" and again == first
    assert await coins_of(api, alice) == 140
    assert len(services.payments.charges) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["gift-on-sender", "join-on-membership", "end-stream"])
async def test_timeout_after_commit_inside_the_request(
    api: Client, services: Services, faults: Faults, path: str
) -> None:
    """The transaction committed and the answer was lost: the retry inside the request must
    recognise its own write, not report the conditions it now fails."""
    setup, table, success = PATHS[path]
    call = await setup(api)
    faults.on(TRANSACT, timeout_after, times=1, when=touches(table))
    assert _typename(await call()) == success
    no_failed_records(services)


# --- Defect 2: one withdrawal can exceed the daily limit -----------------------------------


async def test_first_withdrawal_of_the_day_over_the_limit_is_refused(api: Client) -> None:
    creator = claims_for("cora")
    await earn(api, creator, [("universe", 5)], "coins-17500", packages=13)  # 224,995 diamonds
    result = await request(api, creator, 224_995, "all")
    assert result["__typename"] == "DailyLimitExceeded"
    assert result["remaining"] == {"amount": 100_000}
    # exactly the limit is allowed
    assert (await request(api, creator, 200_000, "limit"))["__typename"] == "WithdrawalRequested"


# --- Defect 3: concurrent withdrawals while gifts land --------------------------------------


@pytest.mark.long_budget
@pytest.mark.parametrize("contention", [False, True], ids=["moto", "contention"])
async def test_concurrent_withdrawals_while_gifts_land_all_land(
    api: Client, services: Services, contention: bool
) -> None:
    """24 withdrawals of $10 race 24 gifts. moto alone runs one call at a time, so nothing
    collides there; with `contention`, DynamoDB's rule is in force (`Overlaps`): a transaction
    that meets another in flight on one of its items is cancelled TransactionConflict. Plans
    that all start on the largest shard collide every time; spread plans, re-planned on
    conflict, all land."""
    creator = claims_for("cora")
    stream = await go_live(api, creator)
    fans = [claims_for(f"fan{i}") for i in range(4)]
    for fan in fans:
        await top_up(api, fan, 1, "coins-17500")
        await send(api, fan, "big", gift="drama-queen", stream=stream, quantity=3)  # 15,000 each
    overlaps = Overlaps(services.dynamo) if contention else None
    more_gifts = [
        send(api, fans[i % 4], f"g{i}", gift="love-bang", stream=stream) for i in range(24)
    ]
    withdrawals = [request(api, creator, 2000, f"w{i}") for i in range(24)]  # $10 each
    results = await asyncio.gather(*withdrawals, *more_gifts)
    if overlaps is not None:
        assert overlaps.conflicts > 0  # the rule was in force: transactions did meet
    assert [r["__typename"] for r in results[:24]] == ["WithdrawalRequested"] * 24
    assert {r["__typename"] for r in results[24:]} == {"GiftSent"}
    me = await api.data("{ me { wallet { diamonds } } }", user=creator)
    assert me["me"]["wallet"]["diamonds"] == 4 * 15_000 + 24 * 25 - 24 * 2000


# --- Defect 4: an ambiguous refund at the provider keeps the hold ---------------------------


class FlakyRefunds:
    """The provider refunds, then the answer is lost (`lose` times); or refuses."""

    def __init__(self, services: Services, lose: int = 0, refuse: bool = False) -> None:
        self.real = services.payments.refund
        self.lose, self.refuse = lose, refuse
        services.payments.refund = self.refund  # type: ignore[method-assign]

    async def refund(self, charge_id: str, idempotency_key: str, amount: int | None = None) -> str:
        if self.refuse:
            raise RefundRefused("charge_disputed")
        refund_id = await self.real(charge_id, idempotency_key, amount)
        if self.lose:
            self.lose -= 1
            raise ProviderUnavailable("read timeout")
        return refund_id


async def test_a_lost_refund_answer_is_asked_again_inside_the_request(
    api: Client, alice: dict[str, Any], admin: dict[str, Any], services: Services
) -> None:
    purchase = (await buy(api, alice, "k", "coins-350"))["purchase"]["id"]
    FlakyRefunds(services, lose=2)
    assert (await refund(api, admin, purchase))["purchase"]["status"] == "REFUNDED"
    assert await coins_of(api, alice) == 0
    assert len(services.payments.refunds) == 1  # type: ignore[attr-defined]


@pytest.mark.short_budget
async def test_refund_timed_out_after_the_provider_refunded_keeps_the_hold(
    api: Client, alice: dict[str, Any], admin: dict[str, Any], services: Services
) -> None:
    purchase = (await buy(api, alice, "k", "coins-350"))["purchase"]["id"]
    # the purchase is listed as COMPLETED while its coins are held
    listed = "{ me { transactions { edges { node { kind referenceId } } } } }"
    await buy(api, alice, "k2")  # 70 more coins
    flaky = FlakyRefunds(services, lose=PERSISTENT)
    # WHEN the provider refunded but its answers were lost until the request's deadline
    result = await api.gql(REFUND, {"id": purchase}, admin)
    assert try_again(result)
    # THEN the coins stay held: still in the wallet, not spendable
    assert await coins_of(api, alice) == 420
    stream = await go_live(api, claims_for("creator"))
    spend = await send(api, alice, "g", gift="concert", stream=stream)  # 500 coins
    assert spend["__typename"] == "InsufficientCoins" and spend["available"] == 70
    replay = await buy(api, alice, "k", "coins-350")
    assert replay["purchase"]["status"] == "COMPLETED"
    assert (await api.data(listed, user=alice))["me"]["transactions"]["edges"]
    # AND asking again finishes the same refund: coins gone, refunded once
    flaky.lose = 0
    assert (await refund(api, admin, purchase))["purchase"]["status"] == "REFUNDED"
    assert await coins_of(api, alice) == 70
    assert len(services.payments.refunds) == 1  # type: ignore[attr-defined]


async def test_refund_refused_by_the_provider_releases_the_hold(
    api: Client, alice: dict[str, Any], admin: dict[str, Any], services: Services
) -> None:
    purchase = (await buy(api, alice, "k", "coins-350"))["purchase"]["id"]
    FlakyRefunds(services, refuse=True)
    result = await refund(api, admin, purchase)
    assert result["__typename"] == "InvalidState"
    stream = await go_live(api, claims_for("creator"))
    assert (await send(api, alice, "g", gift="concert", stream=stream))["__typename"] == (
        "InsufficientCoins"  # 350 < 500, but all 350 are spendable again:
    )
    assert (await send(api, alice, "g2", gift="rainbow-puke", stream=stream, quantity=3))[
        "wallet"
    ] == {"coins": 50, "diamonds": 0}


# --- Defect 6: mutations without a required key are safe to retry ---------------------------


async def test_keyed_start_end_publish_create_replay_after_a_lost_response(
    api: Client, services: Services
) -> None:
    creator = claims_for("cora")
    real = services.dynamo.transact
    lose = [False]

    async def transact(actions: Any) -> None:  # the write lands, the response is lost
        await real(actions)
        if lose[0]:
            lose[0] = False
            raise ConnectionError("response lost")

    services.dynamo.transact = transact  # type: ignore[method-assign]
    for document, variables, field in [
        (START_KEYED, {"t": "Live", "k": "s1"}, "stream"),
        (PUBLISH_KEYED, {"t": "Clip", "k": "v1"}, "video"),
        (CREATE_KEYED, {"t": "Party", "k": "e1"}, "event"),
    ]:
        lose[0] = True
        assert (await api.gql(document, variables, creator))["errors"]
        first = await api.data(document, variables, creator)
        (payload,) = first.values()
        assert payload[field]["id"]
        assert await api.data(document, variables, creator) == first  # the same one again
        conflict = await api.data(document, {**variables, "t": "Other"}, creator)
        assert conflict[next(iter(first))]["__typename"] == "IdempotencyConflict"
    stream = (await api.data(START_KEYED, {"t": "Live", "k": "s1"}, creator))["startLiveStream"]
    lose[0] = True
    stream_id = stream["stream"]["id"]
    assert (await api.gql(END_KEYED, {"id": stream_id, "k": "end1"}, creator))["errors"]
    ended = (await api.data(END_KEYED, {"id": stream_id, "k": "end1"}, creator))["endLiveStream"]
    assert ended["__typename"] == "LiveStreamEnded" and ended["stream"]["status"] == "ENDED"
    # without a key, ending an ended stream is InvalidState, as the contract says
    unkeyed = (await api.data(END, {"id": stream_id}, creator))["endLiveStream"]
    assert unkeyed["__typename"] == "InvalidState"
    videos = [v for v in scan(services, "videos") if "#" not in v["id"]]
    events = [e for e in scan(services, "events") if "#" not in e["id"]]
    assert len(videos) == 1 and len(events) == 1
    assert (
        len(
            [
                s
                for s in scan(services, "streams")
                if s["id"].startswith("str_") and "#" not in s["id"]
            ]
        )
        == 1
    )


async def test_unkeyed_publish_and_start_survive_a_timeout_after_commit(
    api: Client, services: Services, faults: Faults
) -> None:
    creator = claims_for("cora")
    faults.on(TRANSACT, timeout_after, times=2)
    assert (await api.data(PUBLISH, {"title": "Clip"}, creator))["publishVideo"][
        "__typename"
    ] == "VideoPublished"
    assert (await api.data(START, {"title": "Live"}, creator))["startLiveStream"][
        "__typename"
    ] == "LiveStreamStarted"
    assert faults.injected == 2
