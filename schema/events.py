"""Events: Event, createEvent, joinEvent and the event query."""

from __future__ import annotations

from typing import Annotated

import strawberry

from infra.dynamo import Item
from resolvers import accounts, events
from schema.accounts import User, Wallet
from schema.common import Info, ctx
from schema.errors import (
    AccountRestricted,
    AgeRestricted,
    AlreadyJoined,
    IdempotencyConflict,
    InsufficientCoins,
    InvalidInput,
    NotAllowed,
    NotFound,
    returns_user_errors,
)


@strawberry.type
class Event:
    id: strawberry.ID
    title: str
    entry_coins: int
    participants: int
    item: strawberry.Private[Item]

    @strawberry.field
    async def host(self, info: Info) -> User:
        return await User.load(info, self.item["hostId"])

    @strawberry.field(description="Whether the signed-in account has joined; false when anonymous.")
    async def joined(self, info: Info) -> bool:
        return await events.joined(ctx(info), self.item["id"])

    @classmethod
    def of(cls, item: Item) -> Event:
        return cls(
            id=strawberry.ID(item["id"]),
            title=item["title"],
            entry_coins=item["entryCoins"],
            participants=item.get("participants", 0),
            item=item,
        )


@strawberry.input
class CreateEventInput:
    title: str
    entry_coins: int = strawberry.field(description="1 to 100000.")
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Optional. With a key, a retry after a lost response returns the first "
        "result instead of acting again (the same rules as sendGift's key).",
    )


@strawberry.type
class EventCreated:
    event: Event


@strawberry.input
class JoinEventInput:
    event_id: strawberry.ID
    idempotency_key: str


@strawberry.type
class EventJoined:
    event_id: strawberry.Private[str]
    account_id: strawberry.Private[str]

    @strawberry.field
    async def event(self, info: Info) -> Event:
        found = await ctx(info).services.events.get(self.event_id, consistent=True)
        assert found is not None
        return Event.of(found)

    @strawberry.field
    async def wallet(self, info: Info) -> Wallet:
        return Wallet.of(await accounts.wallet(ctx(info), self.account_id))


CreateEventResult = Annotated[
    EventCreated | AgeRestricted | InvalidInput | IdempotencyConflict,
    strawberry.union("CreateEventResult"),
]
JoinEventResult = Annotated[
    EventJoined
    | InsufficientCoins
    | AlreadyJoined
    | NotFound
    | NotAllowed
    | AgeRestricted
    | IdempotencyConflict
    | InvalidInput
    | AccountRestricted,
    strawberry.union("JoinEventResult", description="NotAllowed: joining your own event."),
]


@strawberry.type
class EventQueries:
    @strawberry.field
    async def event(self, info: Info, id: strawberry.ID) -> Event | None:
        item = await events.event(ctx(info), str(id))
        return Event.of(item) if item else None


@strawberry.type
class EventMutations:
    @strawberry.mutation(description="Create an event that costs entryCoins to join. Adults only.")
    @returns_user_errors
    async def create_event(self, info: Info, input: CreateEventInput) -> CreateEventResult:
        created = await events.create_event(
            ctx(info), input.title, input.entry_coins, input.idempotency_key
        )
        return EventCreated(event=Event.of(created))

    @strawberry.mutation(
        description="Pay an event's entry coins; its host earns the same number of diamonds. "
        "Once per account."
    )
    @returns_user_errors
    async def join_event(self, info: Info, input: JoinEventInput) -> JoinEventResult:
        outcome = await events.join_event(ctx(info), str(input.event_id), input.idempotency_key)
        return EventJoined(event_id=outcome.event_id, account_id=outcome.account_id)
