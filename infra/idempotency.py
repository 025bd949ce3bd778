"""Idempotency table: one record per (caller, mutation, idempotency key).

Key: key = "<caller>#<mutation>#<idempotencyKey>". TTL attribute expiresAt (epoch seconds):
records live at least `idempotency_ttl_seconds` (24 h by default); DynamoDB deletes them later.

Life of a record: claimed PENDING with a hash of the request and the ids the operation will
use; then, in the same transaction as the balance change, COMPLETED; or FAILED with the
user error to replay. A retry finds the record and resumes or replays with the same ids.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from infra.dynamo import Dynamo, Item
from infra.ids import epoch

TABLE = "idempotency"
PENDING, COMPLETED, FAILED = "PENDING", "COMPLETED", "FAILED"
EVENT_DAYS = 30


def request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_key(caller: str, mutation: str, key: str) -> str:
    return f"{caller}#{mutation}#{key}"


class IdempotencyRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    async def claim(self, key: str, request: str, data: dict[str, Any]) -> Item:
        """Create a PENDING record and return it, or return the one already there (one
        conditional put)."""
        record = {
            "key": key,
            "requestHash": request,
            "status": PENDING,
            "expiresAt": epoch() + self.dynamo.settings.idempotency_ttl_seconds,
            **data,
        }
        existing = await self.dynamo.put_if_absent(TABLE, record, "key")
        return record if existing is None else existing

    async def get(self, key: str) -> Item | None:
        return await self.dynamo.get(TABLE, {"key": key}, consistent=True)

    def complete_action(self, key: str, request: str) -> dict[str, Any]:
        """Mark PENDING -> COMPLETED; fails (cancelling the transaction) if already done."""
        return self.dynamo.update_action(
            TABLE,
            {"key": key},
            "SET #s = :done",
            condition="#s = :pending AND requestHash = :h",
            names={"#s": "status"},
            values={":done": COMPLETED, ":pending": PENDING, ":h": request},
        )

    def complete_as_action(self, key: str, request: str, purchase_id: str) -> dict[str, Any]:
        """PENDING -> COMPLETED naming the purchase it completed as (a store purchase redeemed
        under several keys is credited once, as the purchase the first credit minted)."""
        return self.dynamo.update_action(
            TABLE,
            {"key": key},
            "SET #s = :done, purchaseId = :p",
            condition="#s = :pending AND requestHash = :h",
            names={"#s": "status"},
            values={":done": COMPLETED, ":pending": PENDING, ":h": request, ":p": purchase_id},
        )

    async def complete_as(self, key: str, request: str, purchase_id: str) -> None:
        """`complete_as_action` on its own; nothing when the record moved on already."""
        await self.dynamo.update(
            TABLE,
            {"key": key},
            "SET #s = :done, purchaseId = :p",
            condition="#s = :pending AND requestHash = :h",
            names={"#s": "status"},
            values={":done": COMPLETED, ":pending": PENDING, ":h": request, ":p": purchase_id},
        )

    async def set_payment(self, key: str, request: str, payment_id: str) -> Item:
        """Keep the provider's payment id on a PENDING record (before it is confirmed), unless
        one is there already; returns the record as it now is. The record then lives 30 days,
        past the processor's webhook retries (3 days), which may credit from it."""
        updated = await self.dynamo.update(
            TABLE,
            {"key": key},
            "SET paymentId = :p, expiresAt = :x",
            condition="#s = :pending AND requestHash = :h AND attribute_not_exists(paymentId)",
            names={"#s": "status"},
            values={
                ":p": payment_id,
                ":pending": PENDING,
                ":h": request,
                ":x": epoch() + EVENT_DAYS * 86_400,
            },
        )
        return updated if updated is not None else (await self.get(key) or {})

    async def seen_event(self, event_id: str) -> bool:
        """Whether a processor's webhook event was applied already."""
        found = await self.dynamo.get(TABLE, {"key": f"event#{event_id}"}, consistent=True)
        return found is not None

    async def remember_event(self, event_id: str) -> None:
        """An applied webhook event, remembered EVENT_DAYS (the processor retries for 3)."""
        await self.dynamo.put(
            TABLE,
            {
                "key": f"event#{event_id}",
                "status": COMPLETED,
                "requestHash": event_id,
                "expiresAt": epoch() + EVENT_DAYS * 86_400,
            },
        )

    async def fail(self, key: str, request: str, error: dict[str, Any]) -> Item | None:
        """Record a user error for replay (PENDING -> FAILED); None if the record moved on."""
        return await self.dynamo.update(
            TABLE,
            {"key": key},
            "SET #s = :failed, #e = :e",
            condition="#s = :pending AND requestHash = :h",
            names={"#s": "status", "#e": "error"},
            values={":failed": FAILED, ":pending": PENDING, ":h": request, ":e": error},
        )

    def completed_action(self, key: str, request: str, data: dict[str, Any]) -> dict[str, Any]:
        """For one-transaction operations: the record is born COMPLETED with the balance
        change; a retry's transaction is cancelled here and gets this record back."""
        record = {
            "key": key,
            "requestHash": request,
            "status": COMPLETED,
            "expiresAt": epoch() + self.dynamo.settings.idempotency_ttl_seconds,
            **data,
        }
        return self.dynamo.put_action(
            TABLE, record, condition="attribute_not_exists(#k)", names={"#k": "key"}
        )

    async def put_failed(self, key: str, request: str, error: dict[str, Any]) -> Item | None:
        """Remember a user error for replay; the existing record if there already is one."""
        record = {
            "key": key,
            "requestHash": request,
            "status": FAILED,
            "error": error,
            "expiresAt": epoch() + self.dynamo.settings.idempotency_ttl_seconds,
        }
        return await self.dynamo.put_if_absent(TABLE, record, "key")
