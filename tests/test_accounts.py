"""Accounts: me, first sight, profiles, public users, ledger pages, identity rules."""

from __future__ import annotations

from typing import Any

from infra.services import Services
from tests.clients import Client, claims_for
from tests.test_purchases import buy

ME = "{ me { id displayName isAdult wallet { coins diamonds } } }"


async def test_first_sight_creates_account_from_claims(api: Client, alice: dict[str, Any]) -> None:
    me = (await api.data(ME, user=alice))["me"]
    assert me == {
        "id": "alice",
        "displayName": "Alice",
        "isAdult": True,
        "wallet": {"coins": 0, "diamonds": 0},
    }


async def test_default_display_name_is_short(api: Client) -> None:
    me = (await api.data(ME, user=claims_for("no-name-user")))["me"]
    assert me["displayName"].startswith("user_") and len(me["displayName"]) <= 13


async def test_is_adult_follows_birthdate_claim(api: Client) -> None:
    from datetime import UTC, datetime

    today = datetime.now(UTC).date()
    eighteen_today = (
        today.replace(year=today.year - 18).isoformat()
        if not (today.month == 2 and today.day == 29)
        else f"{today.year - 18}-03-01"
    )
    cases = {
        "1990-01-01": True,
        "2015-06-01": False,
        None: False,
        "not-a-date": False,
        eighteen_today: today.month != 2 or today.day != 29,
    }
    for birthdate, adult in cases.items():
        claims = {"sub": f"u-{birthdate}", **({"birthdate": birthdate} if birthdate else {})}
        assert (await api.data(ME, user=claims))["me"]["isAdult"] is adult, birthdate


async def test_me_needs_a_token(api: Client) -> None:
    result = await api.gql(ME)
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert result["data"] is None


async def test_update_profile_trims_and_validates(api: Client, alice: dict[str, Any]) -> None:
    doc = """mutation P($name: String!) { updateProfile(input: {displayName: $name}) {
      __typename ... on ProfileUpdated { user { id displayName } }
      ... on InvalidInput { field message } } }"""
    ok = (await api.data(doc, {"name": "  Alice B  "}, alice))["updateProfile"]
    assert ok == {"__typename": "ProfileUpdated", "user": {"id": "alice", "displayName": "Alice B"}}
    for bad in ["", "   ", "x" * 51]:
        result = (await api.data(doc, {"name": bad}, alice))["updateProfile"]
        assert result["__typename"] == "InvalidInput" and result["field"] == "displayName"
    assert (await api.data(ME, user=alice))["me"]["displayName"] == "Alice B"


async def test_user_is_public(api: Client, alice: dict[str, Any]) -> None:
    await api.data(ME, user=alice)
    assert (await api.data('{ user(id: "alice") { id displayName } }'))["user"] == {
        "id": "alice",
        "displayName": "Alice",
    }
    assert (await api.data('{ user(id: "nobody") { id } }'))["user"] is None


async def test_transactions_page_newest_first(api: Client, alice: dict[str, Any]) -> None:
    ids = [(await buy(api, alice, f"k{i}"))["purchase"]["id"] for i in range(5)]
    doc = """query T($after: String) { me { transactions(first: 2, after: $after) {
      edges { cursor node { referenceId } } pageInfo { hasNextPage endCursor } } } }"""
    seen, after, pages = [], None, 0
    while True:
        page = (await api.data(doc, {"after": after}, alice))["me"]["transactions"]
        seen += [e["node"]["referenceId"] for e in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == list(reversed(ids))
    assert pages == 3


async def test_bad_cursor_and_page_size_are_user_errors(api: Client, alice: dict[str, Any]) -> None:
    for args in ['after: "garbage"', "first: 0", "first: 1000"]:
        result = await api.gql(
            f"{{ me {{ transactions({args}) {{ edges {{ cursor }} }} }} }}", user=alice
        )
        assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", args


async def test_me_wallet_is_one_get_item(api: Client, alice: dict[str, Any], calls: Any) -> None:
    await api.data(ME, user=alice)  # first sight: GetItem + conditional PutItem
    calls.reset()
    await api.data("{ me { wallet { coins } } }", user=alice)
    assert calls.counts() == {"GetItem": 1}


async def test_birthdate_change_is_synced(api: Client, services: Services) -> None:
    await api.data(ME, user=claims_for("grower", birthdate="2015-01-01"))
    await api.data(ME, user=claims_for("grower", birthdate="1999-01-01"))
    stored = await services.accounts.get("grower")
    assert stored is not None and stored["birthdate"] == "1999-01-01"


async def test_update_profile_is_one_write(api: Client, calls: Any) -> None:
    newcomer = claims_for("newcomer", name="New")
    calls.reset()
    doc = 'mutation { updateProfile(input: {displayName: "Renamed"}) { __typename } }'
    await api.data(doc, user=newcomer)  # first sight included
    assert calls.counts() == {"UpdateItem": 1}
    assert (await api.data(ME, user=newcomer))["me"]["displayName"] == "Renamed"
    assert (await api.data(ME, user=newcomer))["me"]["wallet"] == {"coins": 0, "diamonds": 0}
