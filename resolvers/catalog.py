"""The catalog: coin packages and gifts, their defaults, and admin edits."""

from __future__ import annotations

import logging
import re
from typing import Any

from infra.catalog import GIFT, PACKAGE, CatalogRepo, PackageChanged, ProductTaken
from infra.dynamo import Item
from infra.ids import iso, now
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import BadUserInput, InvalidInput, TryAgain
from resolvers.money import CURRENCIES

DEFAULT_PACKAGES = [  # (coins, price in US cents)
    (70, 99),
    (350, 499),
    (700, 999),
    (1_400, 1_999),
    (3_500, 4_999),
    (7_000, 9_999),
    (17_500, 24_999),
]
DEFAULT_GIFTS = [  # (id, name, coins = diamonds)
    ("rose", "Rose", 1),
    ("panda", "Panda", 5),
    ("love-bang", "Love Bang", 25),
    ("rainbow-puke", "Rainbow Puke", 100),
    ("concert", "Concert", 500),
    ("galaxy", "Galaxy", 1_000),
    ("drama-queen", "Drama Queen", 5_000),
    ("interstellar", "Interstellar", 10_000),
    ("lion", "Lion", 29_999),
    ("universe", "Universe", 44_999),
]
logger = logging.getLogger("livecoins")
MAX_COINS = 10_000_000
MAX_PRICE = 100_000_000
# Apple: letters, digits, underscores and periods; Google: also hyphens, lower case first.
PRODUCT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,149}")


async def seed(catalog: CatalogRepo) -> int:
    """Add the default catalog without overwriting admin edits; returns how many were added."""
    added = 0
    stamp = iso(now())
    for coins, cents in DEFAULT_PACKAGES:
        item = {
            "id": f"coins-{coins}",
            "coins": coins,
            "priceAmount": cents,
            "currency": "USD",
            "active": True,
            "updatedAt": stamp,
        }
        added += await catalog.add_if_absent(PACKAGE, item)
    for gift_id, name, coins in DEFAULT_GIFTS:
        item = {
            "id": gift_id,
            "name": name,
            "coins": coins,
            "diamonds": coins,
            "active": True,
            "updatedAt": stamp,
        }
        added += await catalog.add_if_absent(GIFT, item)
    return added


async def packages(ctx: Context) -> list[Item]:
    items = await ctx.services.catalog.items(PACKAGE)
    active = [i for i in items.values() if i["active"]]
    return sorted(active, key=lambda i: (i["priceAmount"], i["coins"], i["id"]))


async def gifts(ctx: Context) -> list[Item]:
    items = await ctx.services.catalog.items(GIFT)
    active = [i for i in items.values() if i["active"]]
    return sorted(active, key=lambda i: (i["coins"], i["id"]))


def _checked(check: Any, *args: Any) -> Any:
    """Admin upserts return the item itself, so bad input is a GraphQL error, not a union."""
    try:
        return check(*args)
    except InvalidInput as error:
        raise BadUserInput(error.message, field=error.field) from error


async def upsert_package(
    ctx: Context,
    package_id: str,
    coins: int,
    price_amount: int,
    currency: str,
    active: bool,
    app_store_product_id: str | None = None,
    play_store_product_id: str | None = None,
) -> Item:
    admin = ctx.require_admin()
    _checked(validation.identifier, package_id, "id")
    _checked(validation.int_range, coins, "coins", 1, MAX_COINS)
    _checked(validation.int_range, price_amount, "priceAmount", 1, MAX_PRICE)
    if currency not in CURRENCIES:
        raise BadUserInput(f"currency must be one of {', '.join(sorted(CURRENCIES))}", "currency")
    products = {"appStoreProductId": app_store_product_id or None}
    products["playStoreProductId"] = play_store_product_id or None
    for field, product_id in products.items():
        if product_id is not None and not PRODUCT_ID.fullmatch(product_id):
            raise BadUserInput(
                f"{field} must be 1 to 150 characters of A-Z a-z 0-9 . _ - (a letter or digit "
                "first)",
                field,
            )
    item = {
        "id": package_id,
        "coins": coins,
        "priceAmount": price_amount,
        "currency": currency,
        "active": active,
        "updatedAt": iso(now()),
        "updatedBy": admin.sub,
        **{field: product_id for field, product_id in products.items() if product_id},
    }
    catalog = ctx.services.catalog
    try:
        stored = await catalog.put_package(item, await catalog.package(package_id))
    except ProductTaken as taken:
        field = "appStoreProductId" if taken.store == "APP_STORE" else "playStoreProductId"
        raise BadUserInput(
            f"{field} {taken.product_id} is already sold as package {taken.package_id}: remove it "
            "there first",
            field,
        ) from taken
    except PackageChanged as changed:
        raise TryAgain("The package was edited meanwhile; read it and retry.") from changed
    logger.info("admin upserted a coin package", extra={"admin": admin.sub, "item": item})
    return stored


async def upsert_gift(
    ctx: Context, gift_id: str, name: str, coins: int, diamonds: int, active: bool
) -> Item:
    admin = ctx.require_admin()
    _checked(validation.identifier, gift_id, "id")
    clean_name = _checked(validation.text, name, "name", 50)
    _checked(validation.int_range, coins, "coins", 1, MAX_COINS)
    # A gift never pays out more diamonds than the coins it costs.
    _checked(validation.int_range, diamonds, "diamonds", 0, coins)
    item = {
        "id": gift_id,
        "name": clean_name,
        "coins": coins,
        "diamonds": diamonds,
        "active": active,
        "updatedAt": iso(now()),
        "updatedBy": admin.sub,
    }
    stored = await ctx.services.catalog.upsert(GIFT, item)
    logger.info("admin upserted a gift", extra={"admin": admin.sub, "item": item})
    return stored
