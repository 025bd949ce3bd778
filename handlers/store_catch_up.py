"""AWS Lambda entrypoint on a schedule: the stores' refunds caught up, so a lost notification is
never a lost refund (resolvers/store_purchases.py, `catch_up`).

Each run reads Apple's refund notification history (REFUND, REFUND_REVERSED, every environment
the deployment accepts) and Google's voided purchases from where the last complete run ended,
brings each purchase they name to its store's state, and consumes the Google purchases
credited and left unconsumed. Returns what it did; what it could not do is left for the next
run (its window is read again: following a transaction twice changes nothing). A deployment
that sells in no store returns at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from infra.config import Settings
from infra.services import Services

logger = Logger(service="livecoins")


def make_handler(services: Services) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    loop = asyncio.new_event_loop()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        from resolvers.store_purchases import catch_up

        if services.app_store is None and services.play_store is None:
            return {"stores": "none configured"}
        report = loop.run_until_complete(catch_up(services))
        summary = report.summary()
        if report.failed:
            logger.warning("store catch-up left work for the next run", extra=summary)
            for failure in report.failed[:20]:
                logger.warning("left for the next run: %s", failure)
        else:
            logger.info("store catch-up", extra=summary)
        return summary

    return handler


_default: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _default
    if _default is None:
        # No payment provider: this function never reads the processor's secret, only the
        # stores' (on first use, when a store is configured).
        _default = make_handler(Services.build(Settings.from_env(), takes_payments=False))
    return _default(event, context)
