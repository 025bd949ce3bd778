"""Catalog table: coin packages and gifts.

Key: kind ("PACKAGE" | "GIFT", HASH), id (RANGE). The whole catalog is small (tens of items),
so a list is one Query per kind, cached in memory for `catalog_cache_seconds`. The partition
is read-hot only, and the cache keeps most requests off it.
"""

from __future__ import annotations

from typing import Any

from infra import runtime
from infra.dynamo import Dynamo, Item

TABLE = "catalog"
PACKAGE, GIFT = "PACKAGE", "GIFT"


class CatalogRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo
        self._cache: dict[str, tuple[float, dict[str, Item]]] = {}

    async def items(self, kind: str) -> dict[str, Item]:
        """Every item of a kind, active or not, by id (cached)."""
        ttl = self.dynamo.settings.catalog_cache_seconds
        cached = self._cache.get(kind)
        if cached and cached[0] > runtime.current().monotonic():
            return cached[1]
        found: dict[str, Item] = {}
        start = None
        while True:
            page, start = await self.dynamo.query(
                TABLE, "#k = :k", names={"#k": "kind"}, values={":k": kind}, start_key=start
            )
            found.update((item["id"], item) for item in page)
            if not start:
                break
        if ttl > 0:
            self._cache[kind] = (runtime.current().monotonic() + ttl, found)
        return found

    async def get(self, kind: str, item_id: str) -> Item | None:
        return (await self.items(kind)).get(item_id)

    async def upsert(self, kind: str, item: dict[str, Any]) -> Item:
        stored = {"kind": kind, **item}
        await self.dynamo.put(TABLE, stored)
        self._cache.pop(kind, None)
        return stored

    async def add_if_absent(self, kind: str, item: dict[str, Any]) -> bool:
        """Seed an item without overwriting an admin's edits; True when it was added."""
        existing = await self.dynamo.put_if_absent(TABLE, {"kind": kind, **item}, "id")
        self._cache.pop(kind, None)
        return existing is None
