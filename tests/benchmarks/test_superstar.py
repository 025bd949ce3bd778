"""Benchmark (make bench): the gifts a second one stream takes on DynamoDB, by the arithmetic
of docs/scaling.md (derived, not measured: DynamoDB at that scale cannot be run here).

The inputs: the items and partition keys one gift writes, counted by
tests/test_gifts_engine.py::test_no_partition_key_is_written_by_every_gift, and DynamoDB's
published limits: 1,000 write units a second per partition, two per transactional item write,
one per index entry (two when it moves).
"""

from __future__ import annotations

import pytest

from infra.ledger import PARTITIONS
from tests.benchmarks.table import Row, Table

pytestmark = pytest.mark.benchmark
PARTITION_WCU = 1_000


def write_bound(gift_shards: int, index_shards: int) -> int:
    """Gifts a second before the busiest partition a gift writes reaches 1,000 WCU/s."""
    return min(
        PARTITION_WCU * gift_shards // 2,  # a stream shard, an earnings shard: 2 WCU a gift
        PARTITION_WCU * min(gift_shards, PARTITIONS) // 2,  # the creator's ledger partition
        PARTITION_WCU * index_shards,  # a byTarget index partition: 1 entry
        PARTITION_WCU * index_shards // 2,  # a byCoins index partition: an entry moved, 2
    )


def test_gifts_a_second_one_stream_takes(bench: Table) -> None:
    single_item = PARTITION_WCU // 2  # every gift writing one item: 2 WCU a gift
    default, superstar = write_bound(32, 1), write_bound(256, 32)
    with_conflicts = 10_000  # docs/scaling.md, "Conflicts": p ≤ 32 % at d ≤ 5 ms, K = 256
    bench.add(
        Row(
            "gifts/s one stream takes on DynamoDB (derived, docs/scaling.md)",
            f"single-item design: {single_item:,}",
            f"default (K = 32, J = 1): {default:,}; `LIVECOINS_GIFT_SHARDS=256 "
            f"LIVECOINS_INDEX_SHARDS=32`: {superstar:,} write-bound, {with_conflicts:,} with "
            "the conflict table",
            f"derived: {default / single_item:.0f} / {superstar / single_item:.0f} "
            f"({with_conflicts / single_item:.0f} at {with_conflicts:,})",
            "Derived, not measured: the busiest partition's write units per gift (counted by "
            "tests/test_gifts_engine.py::test_no_partition_key_is_written_by_every_gift) against "
            "1,000 WCU/s per partition; at 10,000 gifts/s the superstar setting's stream shards "
            "see up to 32 % first-attempt TransactionConflicts if an item stays 5 ms in a "
            "transaction (each retried inside the request).",
            "≥ 10,000 by one documented setting",
        )
    )
    assert default == 500 and superstar == 16_000
