"""Issue 9: the authorization matrix. Every Query and Mutation field of the schema, asked by
each kind of caller, with the answer each must get: one table, not scattered asserts. A field
without a row fails `test_every_field_has_a_row`.

An answer is an error code (UNAUTHENTICATED, FORBIDDEN), a result union member's __typename,
or DATA (the field answered without an error). Rows run top to bottom, the columns of a row
left to right, all against one set of accounts: the owner's live stream, video and event.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.config import Settings
from schema import schema
from tests.clients import Client, claims_for
from tests.gifting import PUBLISH, go_live

ROLES = ("anonymous", "minor", "adult", "other", "admin", "owner")
CLAIMS: dict[str, dict[str, Any] | None] = {
    "anonymous": None,
    "minor": claims_for("kid", birthdate="2015-06-01"),
    "adult": claims_for("adult"),
    "other": claims_for("other"),  # another adult, not the owner of what is asked about
    "admin": claims_for("root", admin=True),
    "owner": claims_for("owner"),
}
U, F, DATA, AGE = "UNAUTHENTICATED", "FORBIDDEN", "DATA", "AgeRestricted"
T = "{ __typename }"
FAKE_PURCHASE, FAKE_WITHDRAWAL = "pur_01HZZZZZZZZZZZZZZZZZZZZZZZ", "wdr_01HZZZZZZZZZZZZZZZZZZZZZZZ"


@pytest.fixture
def settings() -> Settings:
    """Creators paid through the payouts sandbox, sent back to the app's origin."""
    return Settings(
        table_prefix="test-",
        catalog_cache_seconds=60,
        payouts_provider="sandbox",
        payout_return_origins=("https://app.example.com",),
    )


# field: (document, answers for anonymous, minor, adult, other, admin, owner)
MATRIX: dict[str, tuple[str, tuple[str, ...]]] = {
    "Query.me": ("{ me { id } }", (U, DATA, DATA, DATA, DATA, DATA)),
    "Query.user": ('{ user(id: "owner") { id } }', (DATA,) * 6),
    "Query.coinPackages": ("{ coinPackages { id } }", (DATA,) * 6),
    "Query.gifts": ("{ gifts { id } }", (DATA,) * 6),
    "Query.liveStreams": ("{ liveStreams { edges { cursor } } }", (DATA,) * 6),
    "Query.liveStream": ("{ liveStream(id: $stream) { id } }", (DATA,) * 6),
    "Query.video": ("{ video(id: $video) { id } }", (DATA,) * 6),
    "Query.event": ("{ event(id: $event) { id joined } }", (DATA,) * 6),
    "Query.pendingWithdrawals": (
        "{ pendingWithdrawals { edges { cursor } } }",
        (U, F, F, F, DATA, F),
    ),
    "Mutation.updateProfile": (
        f'mutation {{ updateProfile(input: {{displayName: "N"}}) {T} }}',
        (
            U,
            "ProfileUpdated",
            "ProfileUpdated",
            "ProfileUpdated",
            "ProfileUpdated",
            "ProfileUpdated",
        ),
    ),
    "Mutation.purchaseCoins": (
        'mutation { purchaseCoins(input: {packageId: "coins-70", paymentToken: "tok_visa", '
        f'idempotencyKey: "m1"}}) {T} }}',
        (U, AGE, "CoinsPurchased", "CoinsPurchased", "CoinsPurchased", "CoinsPurchased"),
    ),
    # no store is configured here: every signed-in caller is told so before anything is
    # written (tests/test_store_purchases.py: a minor's purchase is bound, then AgeRestricted)
    "Mutation.redeemStorePurchase": (
        'mutation { redeemStorePurchase(input: {store: APP_STORE, receipt: "a.b.c", '
        f'idempotencyKey: "m5"}}) {T} }}',
        (U,) + ("PAYMENTS_NOT_CONFIGURED",) * 5,
    ),
    "Mutation.sendGift": (
        'mutation { sendGift(input: {giftId: "rose", streamId: $stream, '
        f'idempotencyKey: "m2"}}) {T} }}',
        (U, AGE, "GiftSent", "GiftSent", "GiftSent", "NotAllowed"),
    ),
    "Mutation.startLiveStream": (
        f'mutation {{ startLiveStream(input: {{title: "t"}}) {T} }}',
        (U, AGE, "LiveStreamStarted", "LiveStreamStarted", "LiveStreamStarted", "InvalidState"),
    ),
    "Mutation.publishVideo": (
        f'mutation {{ publishVideo(input: {{title: "t"}}) {T} }}',
        (U,) + ("VideoPublished",) * 5,
    ),
    "Mutation.createEvent": (
        f'mutation {{ createEvent(input: {{title: "t", entryCoins: 1}}) {T} }}',
        (U, AGE, "EventCreated", "EventCreated", "EventCreated", "EventCreated"),
    ),
    "Mutation.joinEvent": (
        f'mutation {{ joinEvent(input: {{eventId: $event, idempotencyKey: "m3"}}) {T} }}',
        (U, AGE, "EventJoined", "EventJoined", "EventJoined", "NotAllowed"),
    ),
    # before requestWithdrawal: the sandbox enables payouts at once, withdrawals need them
    "Mutation.startPayoutOnboarding": (
        'mutation { startPayoutOnboarding(input: {returnUrl: "https://app.example.com/", '
        f'refreshUrl: "https://app.example.com/"}}) {T} }}',
        (U, AGE, *("PayoutOnboardingStarted",) * 4),
    ),
    "Mutation.requestWithdrawal": (
        f'mutation {{ requestWithdrawal(input: {{diamonds: 2000, idempotencyKey: "m4"}}) {T} }}',
        (
            U,
            AGE,
            "InsufficientDiamonds",
            "InsufficientDiamonds",
            "InsufficientDiamonds",
            "InsufficientDiamonds",
        ),
    ),
    "Mutation.settleWithdrawal": (
        f'mutation {{ settleWithdrawal(input: {{withdrawalId: "{FAKE_WITHDRAWAL}", '
        f"outcome: PAID}}) {T} }}",
        (U, F, F, F, "NotFound", F),
    ),
    "Mutation.refundPurchase": (
        f'mutation {{ refundPurchase(input: {{purchaseId: "{FAKE_PURCHASE}"}}) {T} }}',
        (U, F, F, F, "NotFound", F),
    ),
    "Mutation.clearRestriction": (
        f'mutation {{ clearRestriction(input: {{accountId: "owner"}}) {T} }}',
        (U, F, F, F, "RestrictionCleared", F),
    ),
    "Mutation.upsertCoinPackage": (
        'mutation { upsertCoinPackage(input: {id: "p", coins: 1, priceAmount: 1}) { id } }',
        (U, F, F, F, DATA, F),
    ),
    "Mutation.upsertGift": (
        'mutation { upsertGift(input: {id: "g", name: "G", coins: 1, diamonds: 1}) { id } }',
        (U, F, F, F, DATA, F),
    ),
    # last: it ends the owner's stream
    "Mutation.endLiveStream": (
        f"mutation {{ endLiveStream(input: {{streamId: $stream}}) {T} }}",
        (U, "NotAllowed", "NotAllowed", "NotAllowed", "NotAllowed", "LiveStreamEnded"),
    ),
}


def test_every_field_has_a_row() -> None:
    fields = {
        f"{root.name}.{name}"
        for root in (schema._schema.query_type, schema._schema.mutation_type)
        if root is not None
        for name in root.fields
    }
    assert set(MATRIX) == fields, {"missing": fields - set(MATRIX), "extra": set(MATRIX) - fields}
    assert all(len(answers) == len(ROLES) for _, answers in MATRIX.values())


def answer(result: dict[str, Any], field: str) -> str:
    if result.get("errors"):
        return str(result["errors"][0].get("extensions", {}).get("code", result["errors"]))
    value = result["data"][field]
    return value["__typename"] if isinstance(value, dict) and "__typename" in value else DATA


async def test_authorization_matrix(api: Client) -> None:
    owner = CLAIMS["owner"]
    assert owner is not None
    ids = {"stream": await go_live(api, owner, "Owner's stream")}
    ids["video"] = (await api.data(PUBLISH, {"title": "v"}, owner))["publishVideo"]["video"]["id"]
    event = (
        'mutation { createEvent(input: {title: "e", entryCoins: 1}) '
        "{ ... on EventCreated { event { id } } } }"
    )
    ids["event"] = (await api.data(event, user=owner))["createEvent"]["event"]["id"]
    seen: dict[str, tuple[str, ...]] = {}
    for name, (document, _) in MATRIX.items():
        field = name.split(".")[1]
        for variable, value in ids.items():
            document = document.replace(f"${variable}", f'"{value}"')
        seen[name] = tuple(
            [answer(await api.gql(document, user=CLAIMS[role]), field) for role in ROLES]
        )
    wrong = {
        name: {"expected": answers, "got": seen[name]}
        for name, (_, answers) in MATRIX.items()
        if seen[name] != answers
    }
    assert not wrong, wrong
