"""AWS Lambda entrypoint for operations: list PENDING withdrawals for review, a page at a time.

Invoke with {"limit": 50, "cursor": "<from the last page>"}; returns
{"withdrawals": [...], "cursor": "<next page>" | null}. Reads the sparse `pending` index
oldest first: never a scan. Admins settle each one with the settleWithdrawal mutation: where a
payouts processor is configured PAID is the transfer to the creator's connected account
(resolvers/payouts.py); without one they pay by hand and PAID records it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from infra.config import Settings
from infra.ids import BadCursor
from infra.services import Services

logger = Logger(service="livecoins")
MAX_LIMIT = 100
FIELDS = ("id", "accountId", "diamonds", "amount", "currency", "createdAt")


def make_handler(services: Services) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    loop = asyncio.new_event_loop()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        limit = event.get("limit", 50)
        cursor = event.get("cursor")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            return {"error": f"limit must be an integer from 1 to {MAX_LIMIT}"}
        if cursor is not None and not isinstance(cursor, str):
            return {"error": "cursor must be a string from a previous page"}
        try:
            items, next_cursor = loop.run_until_complete(
                services.withdrawals.pending_page(limit, cursor)
            )
        except BadCursor:
            return {"error": "cursor must be a string from a previous page"}
        page = [{k: item[k] for k in FIELDS} for item in items]
        logger.info("pending withdrawals", extra={"pending": len(page), "more": bool(next_cursor)})
        return {"withdrawals": page, "cursor": next_cursor}

    return handler


_default: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _default
    if _default is None:
        # No payment provider: this function never reads the processor's secret.
        _default = make_handler(Services.build(Settings.from_env(), takes_payments=False))
    return _default(event, context)
