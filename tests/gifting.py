"""Helpers shared by the gifting tests: going live, topping up, sending gifts."""

from __future__ import annotations

from typing import Any

from tests.clients import Client
from tests.test_purchases import buy

START = """mutation S($title: String!) { startLiveStream(input: {title: $title}) {
  __typename ... on LiveStreamStarted { stream { id status title creator { id } } }
  ... on UserError { message } ... on InvalidInput { field } } }"""
END = """mutation E($id: ID!) { endLiveStream(input: {streamId: $id}) {
  __typename ... on LiveStreamEnded { stream { id status endedAt } }
  ... on UserError { message } } }"""
SEND = """mutation G($input: SendGiftInput!) { sendGift(input: $input) {
  __typename
  ... on GiftSent { transfer { id coins diamonds quantity gift { id coins }
                               sender { id } recipient { id } stream { id } video { id } }
                    wallet { coins diamonds } }
  ... on InsufficientCoins { required available }
  ... on InvalidInput { field }
  ... on UserError { message } } }"""
PUBLISH = """mutation V($title: String!) { publishVideo(input: {title: $title}) {
  __typename ... on VideoPublished { video { id title creator { id } coinsReceived } }
  ... on InvalidInput { field } } }"""


async def go_live(api: Client, user: dict[str, Any], title: str = "Hello") -> str:
    result = (await api.data(START, {"title": title}, user))["startLiveStream"]
    assert result["__typename"] == "LiveStreamStarted", result
    stream_id: str = result["stream"]["id"]
    return stream_id


async def top_up(
    api: Client, user: dict[str, Any], packages: int = 1, package: str = "coins-70"
) -> None:
    for n in range(packages):
        assert (await buy(api, user, f"topup-{package}-{n}", package))[
            "__typename"
        ] == "CoinsPurchased"


async def send(
    api: Client,
    user: dict[str, Any],
    key: str,
    gift: str = "rose",
    stream: str | None = None,
    video: str | None = None,
    quantity: int | None = 1,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"giftId": gift, "idempotencyKey": key}
    if stream is not None:
        payload["streamId"] = stream
    if video is not None:
        payload["videoId"] = video
    if quantity is not None:
        payload["quantity"] = quantity
    result: dict[str, Any] = (await api.data(SEND, {"input": payload}, user))["sendGift"]
    return result
