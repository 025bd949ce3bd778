"""Retries after a lost response, on every money path: the write happened, the caller did not
hear back, and asks again with the same idempotency key. Nothing may happen twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.services import Services
from tests.clients import Client, claims_for
from tests.gifting import go_live, send, top_up
from tests.test_events import JOIN, create
from tests.test_purchases import coins_of
from tests.test_refunds import REFUND
from tests.test_withdrawals import earn, request


@pytest.fixture
def lose_next_response(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Arm it, and the next TransactWriteItems is applied but answers with a network error."""
    real = services.dynamo.transact
    armed: list[bool] = []

    async def transact(actions: Any) -> None:
        await real(actions)
        if armed:
            armed.clear()
            raise ConnectionError("response lost")

    monkeypatch.setattr(services.dynamo, "transact", transact)
    yield lambda: armed.append(True)


async def test_send_gift_retry(api: Client, alice: dict[str, Any], lose_next_response: Any) -> None:
    stream = await go_live(api, claims_for("creator"))
    await top_up(api, alice)
    lose_next_response()
    doc = (
        "mutation G($i: SendGiftInput!) { sendGift(input: $i) { __typename "
        "... on GiftSent { transfer { id } } } }"
    )
    variables = {"i": {"giftId": "panda", "streamId": stream, "idempotencyKey": "g"}}
    lost = await api.gql(doc, variables, alice)
    assert lost["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    retried = await send(api, alice, "g", gift="panda", stream=stream)
    again = await send(api, alice, "g", gift="panda", stream=stream)
    assert retried["__typename"] == "GiftSent"
    assert retried["transfer"]["id"] == again["transfer"]["id"]
    assert await coins_of(api, alice) == 65


async def test_join_event_retry(
    api: Client, alice: dict[str, Any], lose_next_response: Any
) -> None:
    event = await create(api, claims_for("host"), coins=30)
    await top_up(api, alice)
    lose_next_response()
    lost = await api.gql(JOIN, {"id": event, "key": "j"}, alice)
    assert lost["errors"]
    retried = (await api.data(JOIN, {"id": event, "key": "j"}, alice))["joinEvent"]
    assert retried["__typename"] == "EventJoined" and retried["wallet"] == {"coins": 40}
    assert retried["event"]["participants"] == 1


async def test_withdrawal_retry(api: Client, lose_next_response: Any) -> None:
    creator = claims_for("cora")
    await earn(api, creator, [("galaxy", 3)], "coins-3500")
    lose_next_response()
    doc = (
        'mutation { requestWithdrawal(input: {diamonds: 2000, idempotencyKey: "w"}) '
        "{ __typename } }"
    )
    assert (await api.gql(doc, user=creator))["errors"]
    retried = await request(api, creator, 2000, "w")
    assert retried["__typename"] == "WithdrawalRequested"
    assert retried["wallet"] == {"diamonds": 1000}
    listed = await api.data("{ me { withdrawals { edges { node { id } } } } }", user=creator)
    assert [e["node"]["id"] for e in listed["me"]["withdrawals"]["edges"]] == [
        retried["withdrawal"]["id"]
    ]


async def test_refund_retry_after_the_provider_refunded(
    api: Client,
    alice: dict[str, Any],
    admin: dict[str, Any],
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.test_purchases import buy

    purchase = (await buy(api, alice, "k", "coins-350"))["purchase"]["id"]
    await buy(api, alice, "k2")
    real = services.dynamo.transact
    calls: list[int] = []

    async def die_on_finish(actions: Any) -> None:
        calls.append(1)
        if len(calls) == 2:  # hold applied, provider refunded, then the finish never lands
            raise ConnectionError("lost before finishing")
        await real(actions)

    monkeypatch.setattr(services.dynamo, "transact", die_on_finish)
    assert (await api.gql(REFUND, {"id": purchase}, admin))["errors"]
    assert await coins_of(api, alice) == 420  # held coins still count in the wallet
    retried = (await api.data(REFUND, {"id": purchase}, admin))["refundPurchase"]
    assert retried["purchase"]["status"] == "REFUNDED"
    assert await coins_of(api, alice) == 70
    assert len(services.payments.refunds) == 1  # type: ignore[attr-defined]
