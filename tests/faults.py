"""DynamoDB faults, injected where the network would: between `Dynamo` and its client.

`Faults` wraps `Dynamo.invoke`, so every retry, backoff and deadline of the code under test
runs as in production. Each fault is a function of (the real invoke, operation, kwargs); rules
pick which calls get which fault. The fault simulator (tests/sim) uses the same faults with a
seeded chooser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError

from infra.dynamo import Dynamo, Invoke

Fault = Callable[[Invoke, str, dict[str, Any]], Awaitable[dict[str, Any]]]
TRANSACT = "transact_write_items"


def client_error(code: str, operation: str, **extra: Any) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": code}, **extra}
    return ClientError(response, operation)  # type: ignore[arg-type]


def conflict_on(choose: Callable[[list[dict[str, Any]]], int]) -> Fault:
    """Cancel a transaction as DynamoDB reports contention: the chosen action
    TransactionConflict, every other action None. Nothing is applied."""

    async def fault(real: Invoke, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        actions = kwargs["TransactItems"]
        index = choose(actions)
        reasons = [{"Code": "None"} for _ in actions]
        reasons[index] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing"}
        raise client_error("TransactionCanceledException", operation, CancellationReasons=reasons)

    return fault


def conflict_on_table(fragment: str) -> Fault:
    """Contention on the first action whose table name contains `fragment`."""

    def choose(actions: list[dict[str, Any]]) -> int:
        for index, action in enumerate(actions):
            (body,) = action.values()
            if fragment in body["TableName"]:
                return index
        raise AssertionError(f"no action on a {fragment} table")

    return conflict_on(choose)


def error(code: str) -> Fault:
    """A refused call: ThrottlingException, ProvisionedThroughputExceededException,
    InternalServerError... Nothing is applied."""

    async def fault(real: Invoke, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        raise client_error(code, operation)

    return fault


async def timeout_before(real: Invoke, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call never reached the table."""
    raise ReadTimeoutError(endpoint_url="https://dynamodb")


async def timeout_after(real: Invoke, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call was applied, and the caller sees a timeout."""
    await real(operation, kwargs)
    raise ReadTimeoutError(endpoint_url="https://dynamodb")


@dataclass
class Rule:
    operation: str
    fault: Fault
    times: int
    when: Callable[[dict[str, Any]], bool]
    after: int = 0  # matching calls let through first


class Faults:
    """Scripted faults for one `Dynamo`: `faults.on(TRANSACT, conflict_on_table("streams"),
    times=3)` makes the next three matching calls fail that way; `injected` counts them."""

    def __init__(self, dynamo: Dynamo) -> None:
        self.real = dynamo.invoke
        self.rules: list[Rule] = []
        self.injected = 0
        dynamo.invoke = self.invoke

    def on(
        self,
        operation: str,
        fault: Fault,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] = lambda kwargs: True,
        after: int = 0,
    ) -> Faults:
        """`times` matching calls get `fault`, after the first `after` went through."""
        self.rules.append(Rule(operation, fault, times, when, after))
        return self

    def clear(self) -> None:
        self.rules.clear()

    async def invoke(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        for rule in self.rules:
            if rule.times and rule.operation == operation and rule.when(kwargs):
                if rule.after:
                    rule.after -= 1
                    continue
                rule.times -= 1
                self.injected += 1
                return await rule.fault(self.real, operation, kwargs)
        return await self.real(operation, kwargs)


def touches(table_fragment: str) -> Callable[[dict[str, Any]], bool]:
    """A `when` for transactions with an action on a table whose name has the fragment."""

    def when(kwargs: dict[str, Any]) -> bool:
        return any(
            table_fragment in body["TableName"]
            for action in kwargs.get("TransactItems", [])
            for body in action.values()
        )

    return when


KEY_ATTRIBUTES = ("id", "key", "kind", "accountId", "entryId", "channel", "subscriber")


def item_of(action: dict[str, Any]) -> tuple[str, str]:
    """(table, key) of one transaction action; a Put's key from the key attributes it has."""
    ((kind, body),) = action.items()
    key = body["Item"] if kind == "Put" else body["Key"]
    named = {name: key[name] for name in KEY_ATTRIBUTES if name in key}
    return body["TableName"], repr(sorted((n, repr(v)) for n, v in named.items()))


class Overlaps:
    """DynamoDB's rule for transactions, on a store that has none (moto runs one call at a
    time): while a transaction is in flight (`hold` seconds, then the real call) it holds its
    items, and another that touches one of them is cancelled, that action
    `TransactionConflict`, every other `None`, as DynamoDB reports contention."""

    def __init__(self, dynamo: Dynamo, hold: float = 0.005) -> None:
        self.real = dynamo.invoke
        self.hold = hold
        self.held: dict[tuple[str, str], int] = {}
        self.conflicts = 0
        self.transactions = 0
        dynamo.invoke = self.invoke

    async def invoke(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        if operation != TRANSACT:
            return await self.real(operation, kwargs)
        self.transactions += 1
        items = [item_of(action) for action in kwargs["TransactItems"]]
        for index, item in enumerate(items):
            if self.held.get(item):
                self.conflicts += 1
                reasons = [{"Code": "None"} for _ in items]
                reasons[index] = {"Code": "TransactionConflict", "Message": "ongoing"}
                raise client_error(
                    "TransactionCanceledException", operation, CancellationReasons=reasons
                )
        for item in items:
            self.held[item] = self.held.get(item, 0) + 1
        try:
            await asyncio.sleep(self.hold)
            return await self.real(operation, kwargs)
        finally:
            for item in items:
                self.held[item] -= 1
