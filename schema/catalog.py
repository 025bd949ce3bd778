"""The catalog: coin packages and gifts on sale, and their admin upserts."""

from __future__ import annotations

import strawberry

from infra.dynamo import Item
from resolvers import catalog
from schema.common import Info, Money, ctx


@strawberry.type
class CoinPackage:
    id: strawberry.ID
    coins: int
    price: Money

    @classmethod
    def of(cls, item: Item) -> CoinPackage:
        return cls(
            id=strawberry.ID(item["id"]),
            coins=item["coins"],
            price=Money.of(item["priceAmount"], item["currency"]),
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
        )
        return CoinPackage.of(item)

    @strawberry.mutation(description="Admin only.")
    async def upsert_gift(self, info: Info, input: GiftInput) -> Gift:
        item = await catalog.upsert_gift(
            ctx(info), str(input.id), input.name, input.coins, input.diamonds, input.active
        )
        return Gift.of(item)
