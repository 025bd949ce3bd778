"""Catalog table: coin packages and gifts, and the store products packages are sold as.

Key: kind ("PACKAGE" | "GIFT" | "STORE_PRODUCT", HASH), id (RANGE). The whole catalog is small
(tens of items), so a list is one Query per kind, cached in memory for `catalog_cache_seconds`.
The partition is read-hot only, and the cache keeps most requests off it.

A package sold in a mobile store names its product ids (`appStoreProductId`,
`playStoreProductId`); each is also an item of its own, kind STORE_PRODUCT, id
"<store>#<productId>", naming the package (`packageId`). A redemption finds its package from
the product id with one GetItem of that item (cached like the catalog), never by reading every
package; and the item's conditional put is what keeps a product id on one package only. The
package and its product items are written in one transaction.
"""

from __future__ import annotations

from typing import Any

from infra import runtime
from infra.dynamo import Dynamo, Item, TransactionCancelled

TABLE = "catalog"
PACKAGE, GIFT, STORE_PRODUCT = "PACKAGE", "GIFT", "STORE_PRODUCT"
# The package attribute holding its product id in each store (infra.stores.APP_STORE, ...).
PRODUCT_FIELDS = {"APP_STORE": "appStoreProductId", "PLAY_STORE": "playStoreProductId"}


def product_key(store: str, product_id: str) -> str:
    return f"{store}#{product_id}"


class ProductTaken(Exception):
    """The product id is already sold as another package (`package_id`)."""

    def __init__(self, store: str, product_id: str, package_id: str) -> None:
        super().__init__(f"{store} product {product_id} is sold as package {package_id}")
        self.store, self.product_id, self.package_id = store, product_id, package_id


class PackageChanged(Exception):
    """Another edit of the package landed between reading and writing it."""


class CatalogRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo
        self._cache: dict[str, tuple[float, dict[str, Item]]] = {}
        # "<store>#<productId>" -> (valid until, package id); only products that exist
        self._products: dict[str, tuple[float, str]] = {}

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

    # --- store products ---------------------------------------------------------------------
    async def package_for_product(self, store: str, product_id: str) -> Item | None:
        """The active package sold as this store product, or None: one GetItem of the product's
        item (cached for `catalog_cache_seconds` when found), the package from the cache."""
        key = product_key(store, product_id)
        clock = runtime.current().monotonic()
        cached = self._products.get(key)
        if cached is not None and cached[0] > clock:
            package_id = cached[1]
        else:
            item = await self.dynamo.get(TABLE, {"kind": STORE_PRODUCT, "id": key})
            if item is None:
                return None  # not cached: product ids come from callers, the cache stays small
            package_id = item["packageId"]
            ttl = self.dynamo.settings.catalog_cache_seconds
            if ttl > 0:
                self._products[key] = (clock + ttl, package_id)
        package = await self.get(PACKAGE, package_id)
        # the package must still name the product (the two are written together)
        if package is None or not package["active"]:
            return None
        if package.get(PRODUCT_FIELDS[store]) != product_id:
            return None
        return package

    async def package(self, package_id: str) -> Item | None:
        """A package as it is now (strongly consistent, uncached): before an edit."""
        return await self.dynamo.get(TABLE, {"kind": PACKAGE, "id": package_id}, consistent=True)

    async def put_package(self, item: dict[str, Any], before: Item | None) -> Item:
        """Write a package and its store product items in one transaction: a product id it
        now names is claimed for it (ProductTaken when another package has it), one it no
        longer names is released. Conditioned on the package as read (`before`, None: absent):
        PackageChanged when another edit landed first."""
        stored = {"kind": PACKAGE, **item}
        package_id = stored["id"]
        if before is None:
            condition, values = "attribute_not_exists(id)", None
        else:
            condition, values = "updatedAt = :u", {":u": before.get("updatedAt", "")}
        actions = [self.dynamo.put_action(TABLE, stored, condition=condition, values=values)]
        claimed: dict[int, tuple[str, str]] = {}  # action index -> the product it claims
        for store, field in PRODUCT_FIELDS.items():
            old, new = (before or {}).get(field), stored.get(field)
            if new:
                claimed[len(actions)] = (store, new)
                actions.append(
                    self.dynamo.put_action(
                        TABLE,
                        {
                            "kind": STORE_PRODUCT,
                            "id": product_key(store, new),
                            "packageId": package_id,
                        },
                        condition="attribute_not_exists(id) OR packageId = :p",
                        values={":p": package_id},
                    )
                )
            if old and old != new:
                actions.append(
                    self.dynamo.delete_action(
                        TABLE,
                        {"kind": STORE_PRODUCT, "id": product_key(store, old)},
                        condition="attribute_not_exists(id) OR packageId = :p",
                        values={":p": package_id},
                    )
                )
        try:
            await self.dynamo.transact(actions)
        except TransactionCancelled as cancelled:
            for index, (store, product_id) in claimed.items():
                if cancelled.failed(index):
                    owner = (cancelled.items[index] or {}).get("packageId", "?")
                    raise ProductTaken(store, product_id, owner) from None
            raise PackageChanged(package_id) from None
        self._cache.pop(PACKAGE, None)
        for store, field in PRODUCT_FIELDS.items():
            for named in ((before or {}).get(field), stored.get(field)):
                if named:
                    self._products.pop(product_key(store, named), None)
        return stored
