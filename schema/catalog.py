"""The catalog: coin packages and gifts on sale, and their admin upserts."""

from __future__ import annotations

from enum import Enum

import strawberry

from infra.catalog import PRODUCT_FIELDS
from infra.dynamo import Item
from resolvers import catalog
from schema.common import Info, Money, ctx


@strawberry.enum(
    description="Where a purchase was paid when it was not paid by card through the payment "
    "provider."
)
class Store(Enum):
    APP_STORE = "APP_STORE"
    PLAY_STORE = "PLAY_STORE"


@strawberry.type
class StoreProduct:
    store: Store
    product_id: str


@strawberry.type
class CoinPackage:
    id: strawberry.ID
    coins: int
    price: Money
    store_products: list[StoreProduct] = strawberry.field(
        description="The store product ids this package is sold as in the mobile apps' stores "
        "(none: card only)."
    )

    @classmethod
    def of(cls, item: Item) -> CoinPackage:
        return cls(
            id=strawberry.ID(item["id"]),
            coins=item["coins"],
            price=Money.of(item["priceAmount"], item["currency"]),
            store_products=[
                StoreProduct(store=Store(store), product_id=item[field])
                for store, field in PRODUCT_FIELDS.items()
                if item.get(field)
            ],
        )


@strawberry.type
class Gift:
    id: strawberry.ID
    name: str
    coins: int = strawberry.field(description="Cost in coins.")
    diamonds: int = strawberry.field(description="Diamonds the recipient earns per gift.")

    @classmethod
    def of(cls, item: Item) -> Gift:
        return cls(
            id=strawberry.ID(item["id"]),
            name=item["name"],
            coins=item["coins"],
            diamonds=item["diamonds"],
        )


@strawberry.input
class CoinPackageInput:
    id: strawberry.ID
    coins: int
    price_amount: int
    currency: str = "USD"
    active: bool = True
    app_store_product_id: str | None = strawberry.field(
        default=None,
        description="The product id of this package in the App Store (a consumable in-app "
        "purchase).",
    )
    play_store_product_id: str | None = strawberry.field(
        default=None,
        description="The product id of this package in Google Play (a consumable in-app product).",
    )


@strawberry.input
class GiftInput:
    id: strawberry.ID
    name: str
    coins: int
    diamonds: int
    active: bool = True


@strawberry.type
class CatalogQueries:
    @strawberry.field(description="Coin packages on sale, cheapest first.")
    async def coin_packages(self, info: Info) -> list[CoinPackage]:
        return [CoinPackage.of(i) for i in await catalog.packages(ctx(info))]

    @strawberry.field(description="Gifts on sale, cheapest first.")
    async def gifts(self, info: Info) -> list[Gift]:
        return [Gift.of(i) for i in await catalog.gifts(ctx(info))]


@strawberry.type
class CatalogMutations:
    @strawberry.mutation(description="Admin only.")
    async def upsert_coin_package(self, info: Info, input: CoinPackageInput) -> CoinPackage:
        item = await catalog.upsert_package(
            ctx(info),
            str(input.id),
            input.coins,
            input.price_amount,
            input.currency,
            input.active,
            input.app_store_product_id,
            input.play_store_product_id,
        )
        return CoinPackage.of(item)

    @strawberry.mutation(description="Admin only.")
    async def upsert_gift(self, info: Info, input: GiftInput) -> Gift:
        item = await catalog.upsert_gift(
            ctx(info), str(input.id), input.name, input.coins, input.diamonds, input.active
        )
        return Gift.of(item)
