"""Issue 9, hostile input: ids that cannot be keys, far-future birthdates, subs that would
name another account's items, and public text with control or bidirectional characters."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from infra.earnings import shard_id
from infra.idempotency import record_key
from infra.ledger import LedgerRepo
from infra.services import Services
from infra.withdrawals import daily_key
from resolvers.validation import ACCOUNT_ID, graphemes
from tests.clients import AiohttpClient, Client, LambdaClient, claims_for
from tests.gifting import go_live, send, top_up

LONG = "x" * 3000
UNION = "{ __typename ... on UserError { message } }"


IMPOSSIBLE_IDS = [
    ('endLiveStream(input: {streamId: ""})', "InvalidInput"),
    (f'endLiveStream(input: {{streamId: "{LONG}"}})', "InvalidInput"),
    ('endLiveStream(input: {streamId: "a#b"})', "InvalidInput"),
    (f'refundPurchase(input: {{purchaseId: "pur_{LONG}"}})', "NotFound"),
    ('refundPurchase(input: {purchaseId: ""})', "NotFound"),
    (f'settleWithdrawal(input: {{withdrawalId: "wdr_{LONG}", outcome: PAID}})', "NotFound"),
    ('settleWithdrawal(input: {withdrawalId: "wdr_", outcome: REJECTED})', "NotFound"),
    (f'joinEvent(input: {{eventId: "{LONG}", idempotencyKey: "k"}})', "InvalidInput"),
    (
        f'sendGift(input: {{giftId: "rose", streamId: "{LONG}", idempotencyKey: "k"}})',
        "InvalidInput",
    ),
]


async def test_ids_that_cannot_exist_never_reach_dynamodb(
    api: Client, admin: dict[str, Any], calls: Any
) -> None:
    for document, answer in IMPOSSIBLE_IDS:
        calls.reset()
        result = await api.data(f"mutation {{ {document} {UNION} }}", user=admin)
        (outcome,) = result.values()
        assert outcome["__typename"] == answer, outcome
        assert len(json.dumps(outcome)) < 300  # the id is not echoed back whole
        assert not calls.counts(), (document[:40], calls.counts())


async def test_lookups_of_impossible_ids_are_null_without_a_read(api: Client, calls: Any) -> None:
    for field in ("user", "liveStream", "video", "event"):
        for bad in ("", LONG, "a#b", "é"):
            calls.reset()
            doc = f"query Q($id: ID!) {{ {field}(id: $id) {{ id }} }}"
            result = await api.data(doc, {"id": bad})
            assert result[field] is None and not calls.counts(), (field, bad, calls.counts())


async def test_far_future_birthdates_are_not_adults(api: Client) -> None:
    for birthdate in ("9999-01-01", "9999-12-31", "9982-02-28", "3000-01-01"):
        user = claims_for(f"future{birthdate}", birthdate=birthdate)
        assert (await api.data("{ me { isAdult } }", user=user))["me"]["isAdult"] is False
        doc = 'mutation { startLiveStream(input: {title: "t"}) { __typename } }'
        started = (await api.data(doc, user=user))["startLiveStream"]
        assert started["__typename"] == "AgeRestricted", birthdate


HOSTILE_SUBS = [
    "cora#05",
    "live#cora",
    "daily#cora",
    "#",
    "x" * 256,
    "ünï",
    "",
    " ",
    "a b",
    "a\x00",
]


async def test_hostile_subs_are_refused_and_see_nothing(
    services: Services, aiohttp_client: Any
) -> None:
    """Defect 5: a sub with "#" read another account's GIFT_RECEIVED ledger shard."""
    from handlers.server import make_app

    http = AiohttpClient(await aiohttp_client(make_app(services)), services.settings.jwt_secret)
    cora, fan = claims_for("cora"), claims_for("fan")
    stream = await go_live(http, cora)
    await top_up(http, fan)
    assert (await send(http, fan, "g1", stream=stream))["__typename"] == "GiftSent"
    me = json.dumps({"query": "{ me { id transactions { edges { node { kind } } } } }"})
    for client in (http, LambdaClient(services)):
        for sub in HOSTILE_SUBS:
            response = await client.request("POST", me, claims={"sub": sub})
            assert response.status == 401, (client.kind, sub, response.body)
    accounts = {a["id"] for a in scan_accounts(services)}
    assert accounts == {"cora", "fan"}


def scan_accounts(services: Services) -> list[dict[str, Any]]:
    from tests.conftest import scan

    return scan(services, "accounts")


def keys_of(sub: str) -> set[tuple[str, str]]:
    """Every (table, key) built from an account id, as infra/ builds them."""
    keys = {("accounts", sub), ("streams", f"live#{sub}")}
    keys |= {("ledger", LedgerRepo.partition(sub, k)) for k in range(100)}
    keys |= {("earnings", shard_id(sub, k)) for k in range(100)}
    keys |= {("withdrawals", daily_key(sub, "2026-01-01")["id"])}
    keys |= {("events", f"evt_1#{sub}")}
    keys |= {
        ("idempotency", record_key(sub, "sendGift", "k")),
        ("idempotency", record_key(sub, "x", "y")),
    }
    return keys


@settings(max_examples=300, deadline=None, database=None)
@given(st.from_regex(ACCOUNT_ID, fullmatch=True), st.from_regex(ACCOUNT_ID, fullmatch=True))
def test_no_account_key_can_be_another_accounts(a: str, b: str) -> None:
    if a != b:
        assert not keys_of(a) & keys_of(b)


def test_the_sub_alphabet_refuses_the_separator_and_accepts_real_subs() -> None:
    from resolvers.identity import Identity

    for sub in HOSTILE_SUBS:
        assert Identity.from_claims({"sub": sub}) is None, sub
    for sub in ("a1b2c3d4-0000-4000-8000-0123456789ab", "auth0|abc", "123456789", "a@b.c"):
        assert Identity.from_claims({"sub": sub}) is not None, sub


PROFILE = """mutation P($name: String!) { updateProfile(input: {displayName: $name}) {
  __typename ... on ProfileUpdated { user { displayName } } ... on InvalidInput { field } } }"""


BAD_NAMES = [
    "a\x00b",
    "bell\x07",
    "evil\u202eexe.txt",
    "iso\u2066late\u2069",
    "rlm\u200f",
    "x\ud800",
]


async def test_display_names_refuse_control_and_bidi_characters(
    api: Client, alice: dict[str, Any]
) -> None:
    await api.data(PROFILE, {"name": "Alice"}, alice)
    for name in BAD_NAMES:
        result = (await api.data(PROFILE, {"name": name}, alice))["updateProfile"]
        assert result == {"__typename": "InvalidInput", "field": "displayName"}, name
    assert (await api.data("{ me { displayName } }", user=alice))["me"]["displayName"] == "Alice"


FAMILY, HEART, FLAG, THUMB, ENGLAND = "👨‍👩‍👧", "❤️", "🇫🇷", "👍🏽", "🏴󠁧󠁢󠁥󠁮󠁧󠁿"


async def test_emoji_sequences_count_as_one_character(api: Client, alice: dict[str, Any]) -> None:
    for emoji in (FAMILY, HEART, FLAG, THUMB, ENGLAND):
        assert len(graphemes(emoji)) == 1, emoji
        fifty = emoji * 50
        ok = (await api.data(PROFILE, {"name": fifty}, alice))["updateProfile"]
        assert ok["user"]["displayName"] == fifty
        too_long = (await api.data(PROFILE, {"name": emoji * 51}, alice))["updateProfile"]
        assert too_long["__typename"] == "InvalidInput"


async def test_names_are_normalized_to_nfc(api: Client, alice: dict[str, Any]) -> None:
    result = (await api.data(PROFILE, {"name": "Jose\u0301"}, alice))["updateProfile"]
    assert result["user"]["displayName"] == "Jos\u00e9"


async def test_a_token_name_with_bidi_characters_is_not_shown(api: Client) -> None:
    user = claims_for("sneaky", name="admin\u202egnp.exe")
    name = (await api.data("{ me { displayName } }", user=user))["me"]["displayName"]
    assert name.startswith("user_") and "\u202e" not in name


async def test_titles_follow_the_same_rules(api: Client, alice: dict[str, Any]) -> None:
    doc = """mutation V($t: String!) { publishVideo(input: {title: $t}) {
      __typename ... on InvalidInput { field } } }"""
    result = (await api.data(doc, {"t": "watch\u202e"}, alice))["publishVideo"]
    assert result == {"__typename": "InvalidInput", "field": "title"}
