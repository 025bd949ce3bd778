"""Idempotency for operations that change balances in one transaction (gifts, event entry,
withdrawals): the idempotency record is written COMPLETED inside that same transaction.

A retry's transaction is cancelled by the record's attribute_not_exists condition, and
DynamoDB hands the record back (ALL_OLD): same input replays its result, a different input
is IdempotencyConflict. User errors are remembered too, so a retry answers the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.dynamo import Item, TransactionCancelled, Unavailable, backoff
from infra.idempotency import COMPLETED, FAILED, record_key, request_hash
from resolvers import validation
from resolvers.context import Context
from resolvers.errors import IdempotencyConflict, TryAgain, UserError


@dataclass(frozen=True)
class Attempt:
    key: str
    digest: str


def begin(ctx: Context, mutation: str, idempotency_key: str, payload: dict[str, Any]) -> Attempt:
    identity = ctx.require_identity()
    validation.idempotency_key(idempotency_key)
    return Attempt(record_key(identity.sub, mutation, idempotency_key), request_hash(payload))


def begin_optional(
    ctx: Context, mutation: str, idempotency_key: str | None, payload: dict[str, Any]
) -> Attempt | None:
    """For mutations whose key is optional (going live, publishing, creating an event)."""
    if idempotency_key is None:
        return None
    return begin(ctx, mutation, idempotency_key, payload)


async def refuse(ctx: Context, attempt: Attempt | None, error: UserError) -> Item:
    """Raise `error`, remembered under the key when there is one (see `fail`)."""
    if attempt is None:
        raise error
    return await fail(ctx, attempt, error)


def completed_action(ctx: Context, attempt: Attempt, data: dict[str, Any]) -> dict[str, Any]:
    return ctx.services.idempotency.completed_action(attempt.key, attempt.digest, data)


def settle(attempt: Attempt, record: Item) -> Item:
    """An earlier attempt's record: raise its error or conflict, or return it to replay."""
    if record.get("requestHash") != attempt.digest:
        raise IdempotencyConflict("This idempotency key was used with a different input.")
    if record.get("status") == FAILED:
        raise UserError.from_record(record["error"])
    return record


async def earlier(
    ctx: Context, attempt: Attempt, cancelled: TransactionCancelled, index: int
) -> Item:
    """The record that cancelled action `index` (an earlier attempt's): settled, to replay."""
    record = cancelled.items[index] or await ctx.services.idempotency.get(attempt.key)
    return settle(attempt, record or {})


async def fail(ctx: Context, attempt: Attempt, error: UserError) -> Item:
    """Remember `error` for this key and raise it; if the key already has a record (a
    concurrent or earlier attempt), answer as that record does."""
    existing = await ctx.services.idempotency.put_failed(
        attempt.key, attempt.digest, error.to_record()
    )
    if existing is None:
        raise error
    return settle(attempt, existing)


async def settled_record(services: Any, key: str) -> Item:
    """The record of a key known to have left PENDING: the transaction that moved it may be
    committed and not yet visible to reads (read-committed), so read again until it is."""
    deadline, attempt = services.dynamo.deadline(), 0
    while True:
        latest = await services.idempotency.get(key)
        if latest and latest["status"] in (COMPLETED, FAILED):
            return latest
        try:
            await backoff(attempt, deadline, "idempotency record")
        except Unavailable as error:
            raise TryAgain("The request is being answered; retry with the same key.") from error
        attempt += 1
