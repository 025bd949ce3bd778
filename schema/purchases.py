"""Coin purchases: the Purchase type, purchaseCoins (cards) and redeemStorePurchase (the mobile
stores)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from infra.dynamo import Item
from resolvers import accounts, purchases, store_purchases
from schema.accounts import Wallet
from schema.catalog import CoinPackage, Store, StoreProduct
from schema.common import Info, Money, ctx, timestamp
from schema.errors import (
    AccountRestricted,
    AgeRestricted,
    IdempotencyConflict,
    InsufficientCoins,
    InvalidInput,
    InvalidState,
    NotFound,
    PaymentActionRequired,
    PaymentDeclined,
    PaymentPending,
    ReceiptAlreadyRedeemed,
    ReceiptInvalid,
    returns_user_errors,
)


@strawberry.enum
class PurchaseStatus(Enum):
    COMPLETED = "COMPLETED"
    REFUNDED = "REFUNDED"


@strawberry.type
class Purchase:
    id: strawberry.ID
    coins: int
    price: Money
    status: PurchaseStatus
    created_at: datetime
    refunded: Money = strawberry.field(
        description="Money returned to the buyer so far: refunds, and disputes while they are "
        "lost or their funds withdrawn."
    )
    coins_taken_back: int = strawberry.field(
        description="Coins taken back for that money (in proportion, rounded up), whether from "
        "the wallet or, where they were spent, from what they paid for."
    )
    store: Store | None = strawberry.field(
        description="Null when paid by card through the payment provider."
    )
    item: strawberry.Private[Item]

    @strawberry.field
    def package(self) -> CoinPackage:
        # The package as it was sold: past purchases keep their price after a repricing; a
        # store purchase names the product it was bought as (coins and price: its quantity's).
        item = self.item
        sold_as = []
        if self.store is not None:
            sold_as = [StoreProduct(store=self.store, product_id=item["productId"])]
        return CoinPackage(
            id=strawberry.ID(item["packageId"]),
            coins=item["coins"],
            price=self.price,
            store_products=sold_as,
        )

    @classmethod
    def of(cls, item: Item) -> Purchase:
        return cls(
            id=strawberry.ID(item["id"]),
            coins=item["coins"],
            price=Money.of(item["priceAmount"], item["currency"]),
            # REFUNDING (coins held while the provider refunds) is still COMPLETED to callers
            status=PurchaseStatus("COMPLETED" if item["status"] == "REFUNDING" else item["status"]),
            created_at=timestamp(item["createdAt"]),
            refunded=Money.of(item.get("refunded", 0), item["currency"]),
            coins_taken_back=item.get("takenBack", 0),
            store=Store(item["store"]) if item.get("store") else None,
            item=item,
        )


@strawberry.type
class CoinsPurchased:
    purchase: Purchase
    account_id: strawberry.Private[str]

    @strawberry.field
    async def wallet(self, info: Info) -> Wallet:
        return Wallet.of(await accounts.wallet(ctx(info), self.account_id))


@strawberry.input
class PurchaseCoinsInput:
    package_id: strawberry.ID
    payment_token: str = strawberry.field(
        description="From the payment provider. The local sandbox approves tok_visa and "
        "declines tok_chargeDeclined and anything unknown."
    )
    idempotency_key: str = strawberry.field(description="1 to 64 characters of A-Z a-z 0-9 _ - : .")


PurchaseCoinsResult = Annotated[
    CoinsPurchased
    | PaymentDeclined
    | NotFound
    | AgeRestricted
    | IdempotencyConflict
    | InvalidInput
    | AccountRestricted
    | PaymentActionRequired,
    strawberry.union("PurchaseCoinsResult"),
]


@strawberry.type
class PurchaseMutations:
    @strawberry.mutation(
        description="Charge the payment token for a package and credit its coins. Adults only."
    )
    @returns_user_errors
    async def purchase_coins(self, info: Info, input: PurchaseCoinsInput) -> PurchaseCoinsResult:
        outcome = await purchases.purchase_coins(
            ctx(info), str(input.package_id), input.payment_token, input.idempotency_key
        )
        return CoinsPurchased(purchase=Purchase.of(outcome.purchase), account_id=outcome.account_id)


@strawberry.input
class RedeemStorePurchaseInput:
    store: Store
    receipt: str = strawberry.field(
        description="App Store: the StoreKit 2 signed transaction (JWS) the app received. Google "
        "Play: the purchase token."
    )
    product_id: str | None = strawberry.field(
        default=None, description="Google Play only: the product id the purchase token belongs to."
    )
    idempotency_key: str = strawberry.field(description="1 to 64 characters of A-Z a-z 0-9 _ - : .")


RedeemStorePurchaseResult = Annotated[
    CoinsPurchased
    | ReceiptInvalid
    | ReceiptAlreadyRedeemed
    | PaymentPending
    | NotFound
    | AgeRestricted
    | AccountRestricted
    | IdempotencyConflict
    | InvalidInput,
    strawberry.union("RedeemStorePurchaseResult"),
]


@strawberry.type
class StorePurchaseMutations:
    @strawberry.mutation(
        description="Credit the coins of a purchase made in a mobile app's store (App Store or "
        "Google Play), once: the store's proof is verified with the store, bound to the first "
        "account that redeems it, and matched to a coin package by its product id. Adults only."
    )
    @returns_user_errors
    async def redeem_store_purchase(
        self, info: Info, input: RedeemStorePurchaseInput
    ) -> RedeemStorePurchaseResult:
        outcome = await store_purchases.redeem_store_purchase(
            ctx(info),
            input.store.value,
            input.receipt,
            input.product_id,
            input.idempotency_key,
        )
        return CoinsPurchased(purchase=Purchase.of(outcome.purchase), account_id=outcome.account_id)


@strawberry.input
class RefundPurchaseInput:
    purchase_id: strawberry.ID


@strawberry.type
class PurchaseRefunded:
    purchase: Purchase


RefundPurchaseResult = Annotated[
    PurchaseRefunded | NotFound | InvalidState | InsufficientCoins,
    strawberry.union(
        "RefundPurchaseResult",
        description="Refunding a refunded purchase returns PurchaseRefunded and changes nothing. "
        "InsufficientCoins: the buyer has already spent the coins; nothing changes.",
    ),
]


@strawberry.type
class RefundMutations:
    @strawberry.mutation(
        description="Admin only. Refund the charge and take the purchase's coins back."
    )
    @returns_user_errors
    async def refund_purchase(self, info: Info, input: RefundPurchaseInput) -> RefundPurchaseResult:
        item = await purchases.refund_purchase(ctx(info), str(input.purchase_id))
        return PurchaseRefunded(purchase=Purchase.of(item))
