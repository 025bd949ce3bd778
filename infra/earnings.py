"""Earnings table: a creator's gift and event diamonds, spread over shard items
"<accountId>#<kk>", each holding its diamonds by when they were earned.

Gifts to one creator can arrive faster than one item takes writes (1,000 write units a
second; a transactional write costs two), so each gift adds to one of `shards` items. The
balance is the account item's `diamonds` plus every shard: one BatchGetItem.

The earnings hold. Diamonds become withdrawable `hold` seconds after they were earned (a
chargeback of the coins that paid for them can still reverse them until then). A shard item
keeps them in time buckets, attributes "h<start>" (start: epoch seconds, a multiple of the
bucket size `max(1 h, hold / 24)`): a gift adds to the current bucket, so the write stays one
addition in the gift's transaction. A bucket has matured once `start + size + hold` has passed;
a matured bucket is never written again (gifts write the current bucket, which is not mature
while hold > 0), so its value, read once, stays exact: `available` is exact at every moment,
with no job required. `diamonds` holds folded, matured diamonds: a withdrawal that draws on a
shard folds its matured buckets into `diamonds` in the same conditional update (each folded
bucket conditioned on the value read), so items stay small where creators withdraw. With
hold = 0 (the local default), gifts add to `diamonds` directly, and there are no buckets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.dynamo import Dynamo, Item

TABLE = "earnings"
BUCKET_PREFIX = "h"


def shard_id(account_id: str, shard: int) -> str:
    return f"{account_id}#{shard:02d}"


def bucket_seconds(hold: int) -> int:
    return max(3600, hold // 24)


def bucket_for(hold: int, now: float) -> str:
    """The attribute a diamond earned `now` is credited to."""
    if hold <= 0:
        return "diamonds"
    size = bucket_seconds(hold)
    return f"{BUCKET_PREFIX}{int(now) // size * size}"


@dataclass
class ShardBalance:
    """One shard item, as of one read, for a hold and a moment."""

    shard: int
    folded: int = 0  # `diamonds`
    matured: dict[str, int] = field(default_factory=dict)  # buckets past the hold
    pending: dict[str, int] = field(default_factory=dict)  # buckets inside the hold
    next_available: float | None = None  # when the earliest pending bucket matures
    # review signals (lifetime): all diamonds earned here, from accounts that were new when
    # they gave, and reversed because their sender's payment was disputed
    earned: int = 0
    from_new: int = 0
    from_restricted: int = 0

    @property
    def available(self) -> int:
        return self.folded + sum(self.matured.values())

    @property
    def pending_total(self) -> int:
        return sum(self.pending.values())

    @property
    def total(self) -> int:
        return self.available + self.pending_total

    @classmethod
    def of(cls, shard: int, item: Mapping[str, Any] | None, hold: int, now: float) -> ShardBalance:
        found = item or {}
        balance = cls(
            shard,
            folded=found.get("diamonds", 0),
            earned=found.get("earned", 0),
            from_new=found.get("fromNew", 0),
            from_restricted=found.get("fromRestricted", 0),
        )
        size = bucket_seconds(hold)
        for name, value in (item or {}).items():
            if not (name.startswith(BUCKET_PREFIX) and name[1:].isdigit()):
                continue
            matures = int(name[1:]) + size + hold
            if matures <= now:
                balance.matured[name] = value
            else:
                balance.pending[name] = value
                if balance.next_available is None or matures < balance.next_available:
                    balance.next_available = matures
        return balance


class EarningsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    def credit_action(
        self,
        account_id: str,
        shard: int,
        diamonds: int,
        bucket: str = "diamonds",
        from_new: bool = False,
    ) -> dict[str, Any]:
        """Credit a gift or an entry (counted in `earned`, and in `fromNew` when its sender's
        account was new: review signals for the creator's withdrawals)."""
        return self.dynamo.update_action(
            TABLE,
            {"id": shard_id(account_id, shard)},
            "SET accountId = :a, #b = if_not_exists(#b, :zero) + :d ADD earned :d"
            + (", fromNew :d" if from_new else ""),
            names={"#b": bucket},
            values={":a": account_id, ":zero": 0, ":d": diamonds},
        )

    def debit_action(
        self,
        account_id: str,
        shard: int,
        diamonds: int,
        fold: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """Take `diamonds` from the shard's available diamonds, folding its matured buckets
        (`fold`, as read) into `diamonds` at the same time. Each folded bucket must still hold
        what was read, and the folded total must cover the take: a stale plan is cancelled."""
        fold = dict(fold or {})
        names = {f"#f{i}": name for i, name in enumerate(fold)}
        values: dict[str, Any] = {f":f{i}": value for i, value in enumerate(fold.values())}
        need = diamonds - sum(fold.values())
        values.update({":delta": -need, ":zero": 0})
        conditions = [f"#f{i} = :f{i}" for i in range(len(fold))]
        if need > 0:
            conditions.append("diamonds >= :need")
            values[":need"] = need
        expression = "SET diamonds = if_not_exists(diamonds, :zero) + :delta"
        if fold:
            expression += " REMOVE " + ", ".join(names)
        return self.dynamo.update_action(
            TABLE,
            {"id": shard_id(account_id, shard)},
            expression,
            condition=" AND ".join(conditions) or None,
            names=names or None,
            values=values,
        )

    def reverse_action(
        self, account_id: str, shard: int, bucket: str, diamonds: int
    ) -> dict[str, Any]:
        """Take diamonds back from a pending bucket (a chargeback): never below zero; a bucket
        folded meanwhile (matured, perhaps withdrawn) is gone, and the condition fails."""
        return self.dynamo.update_action(
            TABLE,
            {"id": shard_id(account_id, shard)},
            "SET #b = #b - :d ADD fromRestricted :d",
            condition="#b >= :d",
            names={"#b": bucket},
            values={":d": diamonds},
        )

    def restore_action(
        self, account_id: str, shard: int, bucket: str, diamonds: int
    ) -> dict[str, Any]:
        """Give reversed diamonds back (a dispute won), into the bucket they were taken from."""
        return self.dynamo.update_action(
            TABLE,
            {"id": shard_id(account_id, shard)},
            "SET #b = if_not_exists(#b, :zero) + :d ADD fromRestricted :minus",
            names={"#b": bucket},
            values={":d": diamonds, ":zero": 0, ":minus": -diamonds},
        )

    async def items(
        self, accounts: Sequence[tuple[str, int]], consistent: bool = False
    ) -> dict[str, list[Item | None]]:
        """Each account's shard items, for (account id, shard count) pairs: one BatchGetItem
        per 100 shards."""
        keys = [{"id": shard_id(a, k)} for a, n in accounts for k in range(n)]
        found = {i["id"]: i for i in await self.dynamo.batch_get(TABLE, keys, consistent)}
        return {a: [found.get(shard_id(a, k)) for k in range(n)] for a, n in accounts}

    async def balances(
        self, account_id: str, shards: int, hold: int, now: float, consistent: bool = False
    ) -> list[ShardBalance]:
        """The shards as of one read; `consistent` where a debit is planned from it (a plan
        made from a stale read is refused by its conditions, and would be planned again)."""
        items = (await self.items([(account_id, shards)], consistent))[account_id]
        return [ShardBalance.of(k, item, hold, now) for k, item in enumerate(items)]

    async def shards(self, accounts: Sequence[tuple[str, int]]) -> dict[str, list[int]]:
        """Each account's diamonds per shard (pending included)."""
        found = await self.items(accounts)
        return {
            a: [ShardBalance.of(k, item, 0, 0).total for k, item in enumerate(items)]
            for a, items in found.items()
        }


# A debit's sources besides the withdrawal, daily total, entry, record and restriction check
# that a withdrawal transaction also holds (DynamoDB: 100 actions per transaction).
MAX_SOURCES = 100 - 5


def plan_debits(
    own: int, shards: Sequence[ShardBalance], diamonds: int, source: Any
) -> list[tuple[int | None, int]]:
    """Which items to take `diamonds` of available diamonds from: (None = the account item
    holding `own`, or a shard, amount); only available diamonds (the hold keeps pending ones).

    One item that holds enough, chosen at random among those that do; otherwise items in a
    random order until the amount is covered (the fewest, largest first, when that would take
    more items than one transaction holds). Concurrent debits of one creator then rarely plan
    on the same item (always taking from the largest made every request collide). `source`
    is the runtime's randomness (`randbelow`)."""
    sources: list[tuple[int | None, int]] = [(None, own), *((s.shard, s.available) for s in shards)]
    sources = [s for s in sources if s[1] > 0]
    enough = [s for s in sources if s[1] >= diamonds]
    if enough:
        return [(enough[source.randbelow(len(enough))][0], diamonds)]
    for i in range(len(sources) - 1, 0, -1):  # Fisher-Yates with the runtime's randomness
        j = source.randbelow(i + 1)
        sources[i], sources[j] = sources[j], sources[i]
    plan = _cover(sources, diamonds)
    if len(plan) > MAX_SOURCES:
        plan = _cover(sorted(sources, key=lambda s: -s[1]), diamonds)
    return plan


def _cover(sources: list[tuple[int | None, int]], diamonds: int) -> list[tuple[int | None, int]]:
    plan, left = [], diamonds
    for item, available in sources:
        take = min(available, left)
        plan.append((item, take))
        left -= take
        if left == 0:
            break
    return plan


def shard_total(item: Mapping[str, Any]) -> int:
    """All diamonds on a shard item, pending included (for audits)."""
    return item.get("diamonds", 0) + sum(
        v for k, v in item.items() if k.startswith(BUCKET_PREFIX) and k[1:].isdigit()
    )
