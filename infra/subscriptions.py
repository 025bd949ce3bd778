"""The gift feed on AWS: WebSocket connections, their giftFeed subscriptions, and posting to
them through API Gateway's management API (handlers/gift_feed.py drives them).

Connections table, key `id` = the API Gateway connection id: `state` ("open" until a valid
connection_init, then "ready"), the caller's `sub` if a token came, and `subscriptions`, a map
subscription id -> channel, so $disconnect can remove them. `expiresAt` (TTL) removes what a
lost $disconnect leaves: API Gateway closes every connection within 2 hours.

Subscriptions table, key (channel, subscriber): channel "<streamId>#<pp>" is one of the
stream's `feed_partitions` subscriber partitions (the connection id's crc32 picks it), read in
parallel by the fan-out; subscriber "<connectionId>#<subscriptionId>" carries the document to
execute for each gift.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

from botocore.exceptions import ClientError

from infra.dynamo import Dynamo, Item
from infra.ids import epoch, iso, now

CONNECTIONS, SUBSCRIPTIONS = "connections", "subscriptions"
LIFETIME_SECONDS = 2 * 3600 + 600  # API Gateway's 2-hour limit, and a margin


def channel(stream_id: str, connection_id: str, partitions: int) -> str:
    return f"{stream_id}#{zlib.crc32(connection_id.encode()) % max(partitions, 1):02d}"


class ConnectionsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    async def open(self, connection_id: str) -> None:
        await self.dynamo.put(
            CONNECTIONS,
            {
                "id": connection_id,
                "state": "open",
                "subscriptions": {},
                "connectedAt": iso(now()),
                "expiresAt": epoch() + LIFETIME_SECONDS,
            },
        )

    async def get(self, connection_id: str) -> Item | None:
        return await self.dynamo.get(CONNECTIONS, {"id": connection_id}, consistent=True)

    async def ready(self, connection_id: str, sub: str | None) -> bool:
        """connection_init accepted: open -> ready, once (False: it was not open)."""
        values: dict[str, Any] = {":ready": "ready", ":open": "open"}
        expression = "SET #s = :ready"
        if sub:
            expression += ", #sub = :sub"
            values[":sub"] = sub
        updated = await self.dynamo.update(
            CONNECTIONS,
            {"id": connection_id},
            expression,
            names={"#s": "state", **({"#sub": "sub"} if sub else {})},
            values=values,
            condition="#s = :open",
        )
        return updated is not None

    async def add_subscription(self, connection_id: str, subscription_id: str, at: str) -> bool:
        """Record a subscription on its connection; False if the id is in use (or the
        connection is gone)."""
        updated = await self.dynamo.update(
            CONNECTIONS,
            {"id": connection_id},
            "SET subscriptions.#id = :channel",
            names={"#id": subscription_id},
            values={":channel": at},
            condition="attribute_exists(id) AND attribute_not_exists(subscriptions.#id)",
        )
        return updated is not None

    async def remove_subscription(self, connection_id: str, subscription_id: str) -> None:
        await self.dynamo.update(
            CONNECTIONS,
            {"id": connection_id},
            "REMOVE subscriptions.#id",
            names={"#id": subscription_id},
            condition="attribute_exists(id)",
        )

    async def close(self, connection_id: str) -> Item | None:
        """Forget the connection; returns it (with its subscriptions) if it was there."""
        return await self.dynamo.delete(CONNECTIONS, {"id": connection_id})


class SubscriptionsRepo:
    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    async def add(
        self, at: str, connection_id: str, subscription_id: str, request: dict[str, Any]
    ) -> None:
        await self.dynamo.put(
            SUBSCRIPTIONS,
            {
                "channel": at,
                "subscriber": f"{connection_id}#{subscription_id}",
                "connectionId": connection_id,
                "subscriptionId": subscription_id,
                # the document and its variables, executed for each gift
                "request": json.dumps(request, sort_keys=True),
                "expiresAt": epoch() + LIFETIME_SECONDS,
            },
        )

    async def remove(self, at: str, connection_id: str, subscription_id: str) -> None:
        await self.dynamo.delete(
            SUBSCRIPTIONS, {"channel": at, "subscriber": f"{connection_id}#{subscription_id}"}
        )

    async def of_stream(self, stream_id: str, partitions: int) -> list[Item]:
        """Every subscriber of a stream: one Query (or more pages) per partition, in parallel."""

        async def partition(at: str) -> list[Item]:
            found: list[Item] = []
            start = None
            while True:
                page, start = await self.dynamo.query(
                    SUBSCRIPTIONS,
                    "channel = :c",
                    names={},
                    values={":c": at},
                    start_key=start,
                    consistent=True,
                )
                found.extend(page)
                if not start:
                    return found

        channels = [f"{stream_id}#{p:02d}" for p in range(max(partitions, 1))]
        pages = await asyncio.gather(*(partition(at) for at in channels))
        return [item for page in pages for item in page]


class Gone(Exception):
    """The connection has closed (API Gateway's GoneException)."""


class ConnectionPoster:
    """Posts to and closes WebSocket connections through API Gateway's management API.

    `endpoint` is https://<api>.execute-api.<region>.amazonaws.com/<stage> on AWS; the local
    cloud's WebSocket events carry a domain name without its port, so it is configured
    (LIVECOINS_FEED_ENDPOINT) rather than read from the event.
    """

    def __init__(self, endpoint: str, region: str) -> None:
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint,
            region_name=region,
            config=Config(
                retries={"total_max_attempts": 3, "mode": "standard"},
                connect_timeout=1,
                read_timeout=3,
                max_pool_connections=32,
            ),
        )

    def post(self, connection_id: str, message: dict[str, Any]) -> None:
        try:
            self.client.post_to_connection(
                ConnectionId=connection_id, Data=json.dumps(message).encode()
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "GoneException":
                raise Gone(connection_id) from error
            raise

    def close(self, connection_id: str) -> None:
        try:
            self.client.delete_connection(ConnectionId=connection_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "GoneException":
                raise
