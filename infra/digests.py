"""A stream's digest on AWS: what landed since the last one, the once-a-second claim, the
sequence (handlers/gift_feed.py builds and broadcasts it).

A stream's gifts reach the fan-out on several DynamoDB stream shards processed at once (its
writes are sharded), so no one invocation sees them all. Each invocation adds what its batch
brings (`contribute`); the first invocation of a second to win that second's claim (a
conditional write on an item keyed by stream and second) builds the digest: totals read from
the stream's counters, the rest from what was added since the previous digest, taken out
exactly (`consume`, conditioned on the sequence it read, so two builders never both number a
digest, and a gift added meanwhile stays for the next).

Items in the subscriptions table, all with `expiresAt` (TTL):
- "<streamId>#digest" / "state": `sequence` (of the last digest), `pendingGifts`,
  `pendingCoins` and `pend` (gift id -> the gift: each batch's largest) since that digest,
  `tickAt` (the second a delayed build is queued for), `ended` (the last digest was built).
- "<streamId>#batch" / "<batch key>": a batch of the stream's gifts already added: a batch
  the fan-out retries (Lambda retries the same records) is not counted twice.
- "<streamId>#claim" / "<epoch second>": the claim of that second's digest.
"""

from __future__ import annotations

from typing import Any

from infra.dynamo import Dynamo, Item, TransactionCancelled
from infra.feed import HIGHLIGHTS, Pending, ranked
from infra.ids import epoch

TABLE = "subscriptions"
STATE_SECONDS = 24 * 3600  # a state untouched for a day goes (streams end long before)
MARK_SECONDS = 3600  # batch marks and claims outlive any retry of their batch
# Largest gifts taken out one by one (an UpdateExpression takes 4 KB): past that (digests did
# not keep up), the lot is reset at once.
MAX_TAKEN = 200
# What a highlight keeps of a gift: what a GiftTransfer shows.
HIGHLIGHT_FIELDS = (
    "id",
    "quantity",
    "coins",
    "diamonds",
    "createdAt",
    "giftId",
    "senderId",
    "recipientId",
    "streamId",
)


def state_key(stream_id: str) -> dict[str, str]:
    return {"channel": f"{stream_id}#digest", "subscriber": "state"}


def compact(transfer: Item) -> Item:
    return {k: transfer[k] for k in HIGHLIGHT_FIELDS if transfer.get(k) is not None}


class DigestState:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    async def ensure(self, stream_id: str) -> None:
        """The stream's state exists (a subscriber's subscribe calls it): one UpdateItem."""
        await self.dynamo.update(
            TABLE,
            state_key(stream_id),
            "SET pend = if_not_exists(pend, :empty), #seq = if_not_exists(#seq, :zero), "
            "pendingGifts = if_not_exists(pendingGifts, :zero), "
            "pendingCoins = if_not_exists(pendingCoins, :zero), expiresAt = :expires",
            names={"#seq": "sequence"},
            values={":empty": {}, ":zero": 0, ":expires": epoch() + STATE_SECONDS},
        )

    async def contribute(self, stream_id: str, batch: str, transfers: list[Item]) -> bool:
        """Add a batch's gifts (count, coins, its largest) once: one TransactWriteItems of the
        batch's mark and the state. False when the batch was added already."""
        largest = sorted(transfers, key=ranked)[:HIGHLIGHTS]
        names = {f"#h{n}": t["id"] for n, t in enumerate(largest)}
        values: dict[str, Any] = {f":h{n}": compact(t) for n, t in enumerate(largest)}
        values |= {":g": len(transfers), ":c": sum(int(t.get("coins", 0)) for t in transfers)}
        sets = ", ".join(f"pend.#h{n} = :h{n}" for n in range(len(largest)))
        mark = self.dynamo.put_action(
            TABLE,
            {
                "channel": f"{stream_id}#batch",
                "subscriber": batch,
                "expiresAt": epoch() + MARK_SECONDS,
            },
            condition="attribute_not_exists(channel)",
        )
        add = self.dynamo.update_action(
            TABLE,
            state_key(stream_id),
            "ADD pendingGifts :g, pendingCoins :c" + (f" SET {sets}" if sets else ""),
            condition="attribute_exists(pend)",
            names=names or None,
            values=values,
        )
        for attempt in range(2):
            try:
                await self.dynamo.transact([mark, add])
                return True
            except TransactionCancelled as cancelled:
                if cancelled.failed(0):
                    return False  # this batch was added before
                if not cancelled.failed(1) or attempt:
                    raise
                await self.ensure(stream_id)  # expired with no digest for a day
        return False

    async def claim(self, stream_id: str, second: int) -> bool:
        """Whether this invocation builds the stream's digest of `second`: one conditional
        PutItem, which one invocation wins."""
        return (
            await self.dynamo.put_if_absent(
                TABLE,
                {
                    "channel": f"{stream_id}#claim",
                    "subscriber": str(second),
                    "expiresAt": epoch() + MARK_SECONDS,
                },
                "channel",
            )
            is None
        )

    async def queue_tick(self, stream_id: str, second: int) -> bool:
        """Whether this invocation queues the build of `second` (once per stream and
        second): one conditional UpdateItem."""
        updated = await self.dynamo.update(
            TABLE,
            state_key(stream_id),
            "SET tickAt = :s",
            values={":s": second},
            condition="attribute_exists(pend) AND (attribute_not_exists(tickAt) OR tickAt < :s)",
        )
        return updated is not None

    async def read(self, stream_id: str) -> Item | None:
        return await self.dynamo.get(TABLE, state_key(stream_id), consistent=True)

    @staticmethod
    def pending(state: Item) -> Pending:
        largest = sorted((state.get("pend") or {}).values(), key=ranked)[:HIGHLIGHTS]
        gifts, coins = int(state.get("pendingGifts", 0)), int(state.get("pendingCoins", 0))
        return Pending(gifts, coins, largest)

    async def consume(self, stream_id: str, state: Item, last: bool) -> bool:
        """Take what `state` (as read) had pending and number the next digest, unless another
        builder did since (False): one conditional UpdateItem."""
        taken = list(state.get("pend") or {})
        expression = "SET #seq = :next, expiresAt = :expires"
        if len(taken) > MAX_TAKEN:  # a backlog: all at once (what a batch adds meanwhile is lost)
            expression += ", pend = :empty"
            taken = []
        names = {"#seq": "sequence", **{f"#h{n}": gift for n, gift in enumerate(taken)}}
        if last:
            expression += ", ended = :true"
        expression += " ADD pendingGifts :gifts, pendingCoins :coins"
        if taken:
            expression += " REMOVE " + ", ".join(f"pend.#h{n}" for n in range(len(taken)))
        values: dict[str, Any] = {
            ":next": int(state.get("sequence", 0)) + 1,
            ":seen": int(state.get("sequence", 0)),
            ":expires": epoch() + STATE_SECONDS,
            ":gifts": -int(state.get("pendingGifts", 0)),
            ":coins": -int(state.get("pendingCoins", 0)),
        }
        if last:
            values[":true"] = True
        if ":empty" in expression:
            values[":empty"] = {}
        updated = await self.dynamo.update(
            TABLE,
            state_key(stream_id),
            expression,
            names=names,
            values=values,
            condition="#seq = :seen AND attribute_not_exists(ended)",
        )
        return updated is not None
