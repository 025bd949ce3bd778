"""History rows that name the gift and the other party: Transaction.transfer, read for a
whole page of the ledger in one BatchGetItem (the per-request transfers DataLoader)."""

from __future__ import annotations

from typing import Any

from tests.clients import Client, claims_for
from tests.gifting import go_live, send, top_up

HISTORY = """query H { me { transactions(first: 20) { edges { node {
  kind coins referenceId
  transfer { id quantity coins gift { name } sender { displayName } recipient { displayName } }
} } } } }"""


async def test_gift_entries_name_their_transfer(api: Client, alice: dict[str, Any]) -> None:
    # GIVEN Alice bought coins and sent Cora two gifts
    cora = claims_for("cora", name="Cora")
    stream = await go_live(api, cora)
    await top_up(api, alice, package="coins-350")
    sent = [
        await send(api, alice, "g1", stream=stream, quantity=3),
        await send(api, alice, "g2", gift="panda", stream=stream),
    ]
    # WHEN she reads her history
    rows = [e["node"] for e in (await api.data(HISTORY, {}, alice))["me"]["transactions"]["edges"]]
    # THEN each gift row carries its transfer; the purchase row has none
    assert [(r["kind"], r["transfer"] and r["transfer"]["gift"]["name"]) for r in rows] == [
        ("GIFT_SENT", "Panda"),
        ("GIFT_SENT", "Rose"),
        ("PURCHASE", None),
    ]
    assert rows[1]["transfer"] == {
        "id": sent[0]["transfer"]["id"],
        "quantity": 3,
        "coins": 3,
        "gift": {"name": "Rose"},
        "sender": {"displayName": "Alice"},
        "recipient": {"displayName": "Cora"},
    }
    assert all(r["transfer"]["id"] == r["referenceId"] for r in rows[:2])
    # AND Cora's history names the sender of what she received
    received = [
        e["node"] for e in (await api.data(HISTORY, {}, cora))["me"]["transactions"]["edges"]
    ]
    assert [(r["kind"], r["transfer"]["sender"]["displayName"]) for r in received] == [
        ("GIFT_RECEIVED", "Alice"),
        ("GIFT_RECEIVED", "Alice"),
    ]


async def test_a_page_of_transfers_is_one_batch(
    api: Client, alice: dict[str, Any], calls: Any
) -> None:
    # GIVEN twelve gifts in Alice's history
    stream = await go_live(api, claims_for("cora", name="Cora"))
    await top_up(api, alice)
    for n in range(12):
        await send(api, alice, f"g{n}", stream=stream)
    await api.data(HISTORY, {}, alice)  # the catalog's gifts are cached after this
    # WHEN the page is read with every transfer, its gift and both parties
    calls.reset()
    rows = (await api.data(HISTORY, {}, alice))["me"]["transactions"]["edges"]
    assert sum(1 for e in rows if e["node"]["transfer"]) == 12
    # THEN: the account, the ledger page, one BatchGetItem of transfers, one of users
    assert calls.counts() == {"GetItem": 1, "Query": 1, "BatchGetItem": 2}
