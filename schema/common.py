"""Types shared by every domain: money, page info, the request context accessor."""

from __future__ import annotations

from datetime import datetime

import strawberry

from resolvers.context import Context
from resolvers.money import MoneyValue

Info = strawberry.Info[Context, None]


def ctx(info: Info) -> Context:
    return info.context


@strawberry.type(description="An amount of money in the currency's minor unit (cents for USD).")
class Money:
    amount: int
    currency: str = strawberry.field(description="ISO 4217 code, e.g. USD.")
    formatted: str = strawberry.field(description='Human-readable, e.g. "$0.99".')

    @classmethod
    def of(cls, amount: int, currency: str) -> Money:
        return cls(
            amount=amount, currency=currency, formatted=MoneyValue(amount, currency).formatted
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None

    @classmethod
    def of(cls, cursors: list[str], more: bool) -> PageInfo:
        return cls(has_next_page=more, end_cursor=cursors[-1] if cursors else None)


def timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)
