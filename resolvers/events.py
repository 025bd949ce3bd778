"""Events: a host creates one with an entry price in coins; joining pays it, once per account.

joinEvent is one TransactWriteItems, like a gift:
  0 accounts[joiner]         coins -= entryCoins   (condition: enough coins)
  1 earnings[host#kk]        diamonds += entryCoins
  2 events[event]            participants += 1     (condition: the event exists)
  3 events[event#joiner]     the membership        (condition: not joined yet)
  4 ledger[joiner]           EVENT_ENTRY
  5 ledger[host#kk]          EVENT_INCOME
  6 idempotency[key]         born COMPLETED        (condition: key unused)
"""

from __future__ import annotations

from dataclasses import dataclass

from infra import runtime
from infra.accounts import is_restricted
from infra.dynamo import Item, TransactionCancelled
from infra.earnings import bucket_for
from infra.ids import iso, new_id, now
from resolvers import idempotency, validation
from resolvers.context import Context
from resolvers.errors import (
    AlreadyJoined,
    InsufficientCoins,
    NotAllowed,
    NotFound,
    restricted,
)

MUTATION, CREATE = "joinEvent", "createEvent"
MAX_ENTRY = 100_000
JOINER, MEMBER, IDEMPOTENCY = 0, 3, 6


@dataclass
class JoinOutcome:
    event_id: str
    account_id: str


async def create_event(
    ctx: Context, title: str, entry_coins: int, idempotency_key: str | None = None
) -> Item:
    """With a key, a retry after a lost response returns the first event, not a second one."""
    identity = ctx.require_identity()
    clean_title = validation.text(title, "title", 100)
    validation.int_range(entry_coins, "entryCoins", 1, MAX_ENTRY)
    ctx.require_adult("host events")
    attempt = idempotency.begin_optional(
        ctx, CREATE, idempotency_key, {"title": clean_title, "entryCoins": entry_coins}
    )
    services = ctx.services
    event = {
        "id": new_id("evt"),
        "hostId": identity.sub,
        "title": clean_title,
        "entryCoins": entry_coins,
        "participants": 0,
        "shards": services.settings.gift_shards,
        "createdAt": iso(now()),
    }
    actions = [
        services.events.create_action(event),
        services.accounts.credit_action(
            identity.sub,
            0,
            0,
            identity.initial_display_name,
            identity.birthdate,
            shards=services.settings.gift_shards,
        ),
    ]
    if attempt is not None:
        actions.append(idempotency.completed_action(ctx, attempt, {"eventId": event["id"]}))
    try:
        await services.dynamo.transact(actions)
    except TransactionCancelled as cancelled:
        if attempt is None or not cancelled.failed(len(actions) - 1):
            if cancelled.failed(0):  # its new random id exists: an earlier try of this call
                return event
            raise
        record = await idempotency.earlier(ctx, attempt, cancelled, len(actions) - 1)
        found = await services.dynamo.committed(
            lambda: services.events.get(record["eventId"], consistent=True), "the event"
        )
        return found
    return event


async def event(ctx: Context, event_id: str) -> Item | None:
    if not validation.is_id(event_id):
        return None
    return await ctx.services.events.get(event_id)


async def joined(ctx: Context, event_id: str) -> bool:
    if ctx.identity is None:
        return False
    return ctx.identity.sub in await ctx.services.events.joined(event_id, [ctx.identity.sub])


async def join_event(ctx: Context, event_id: str, idempotency_key: str) -> JoinOutcome:
    identity = ctx.require_identity()
    validation.idempotency_key(idempotency_key)
    validation.identifier(event_id, "eventId")
    ctx.require_adult("join events")
    attempt = idempotency.begin(ctx, MUTATION, idempotency_key, {"eventId": event_id})
    services = ctx.services
    found = await services.events.get(event_id, consistent=True)  # created a moment ago?
    if found is None:
        return await _replay(
            ctx, await idempotency.fail(ctx, attempt, NotFound(f"No event {event_id}."))
        )
    if found["hostId"] == identity.sub:
        return await _replay(
            ctx,
            await idempotency.fail(ctx, attempt, NotAllowed("Hosts cannot join their own event.")),
        )
    price, host, shard = (
        found["entryCoins"],
        found["hostId"],
        runtime.current().randbelow(found["shards"]),
    )
    created = iso(now())
    bucket = bucket_for(services.settings.earnings_hold_seconds, runtime.current().time())
    paid = {"hostId": host, "coins": price, "diamonds": price, "shard": shard, "bucket": bucket}
    actions = [
        services.accounts.debit_action(identity.sub, price, 0),
        services.earnings.credit_action(host, shard, price, bucket),
        *services.events.join_actions(event_id, identity.sub, created, paid),
        services.ledger.put_action(
            entry_id=new_id("tx"),
            account_id=identity.sub,
            kind="EVENT_ENTRY",
            coins=-price,
            diamonds=0,
            reference_id=event_id,
            created_at=created,
        ),
        services.ledger.put_action(
            entry_id=new_id("tx"),
            account_id=host,
            kind="EVENT_INCOME",
            coins=0,
            diamonds=price,
            reference_id=event_id,
            created_at=created,
            shard=shard,
        ),
        idempotency.completed_action(ctx, attempt, {"eventId": event_id}),
    ]
    try:
        await services.dynamo.transact(actions)
    except TransactionCancelled as cancelled:
        return await _cancelled(ctx, attempt, cancelled, price)
    return JoinOutcome(event_id, identity.sub)


async def _cancelled(
    ctx: Context, attempt: idempotency.Attempt, cancelled: TransactionCancelled, price: int
) -> JoinOutcome:
    """The answer for a join whose conditions failed (conflicts were retried below)."""
    if cancelled.failed(IDEMPOTENCY):
        return await _replay(ctx, await idempotency.earlier(ctx, attempt, cancelled, IDEMPOTENCY))
    if cancelled.failed(MEMBER):
        return await _replay(
            ctx,
            await idempotency.fail(
                ctx, attempt, AlreadyJoined("You have already joined this event.")
            ),
        )
    if cancelled.failed(JOINER) and is_restricted(cancelled.items[JOINER]):
        return await _replay(ctx, await idempotency.fail(ctx, attempt, restricted()))
    if cancelled.failed(JOINER):
        available = (cancelled.items[JOINER] or {}).get("coins", 0)
        error = InsufficientCoins(
            f"Entry costs {price} coins; you have {available}.",
            required=price,
            available=available,
        )
        return await _replay(ctx, await idempotency.fail(ctx, attempt, error))
    raise cancelled


async def _replay(ctx: Context, record: Item) -> JoinOutcome:
    return JoinOutcome(record["eventId"], ctx.require_identity().sub)
