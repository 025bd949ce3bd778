"""The live feed on AWS: WebSocket connections, their giftFeed and streamDigest
subscriptions, the stream's subscriber counts, the posters' checkpoints, and posting through
API Gateway's management API (handlers/gift_feed.py drives them).

Connections table, key `id` = the API Gateway connection id: `state` ("open" until a valid
connection_init, then "ready"), the caller's `sub` if a token came, and `subscriptions`, a map
subscription id -> channel, so $disconnect can remove them. `expiresAt` (TTL) removes what a
lost $disconnect leaves: API Gateway closes every connection within 2 hours.

Subscriptions table, key (channel, subscriber), every item with `expiresAt` (TTL):
- channel "<streamId>#<kind>#<ppp>", subscriber "<connectionId>#<subscriptionId>": one
  subscription (kind "feed" for giftFeed, "digest" for streamDigest) with its document. A
  stream's subscribers of a kind spread over `partitions_for(count)` partitions, doubling as
  the stream grows (a new subscriber lands in one of the current ones, by the connection id's
  crc32; the old ones keep theirs), each posted to by its own invocation.
- "<streamId>#meta" / "meta": the stream's subscriber counts per kind (`feed`, `digest`),
  the giftFeed places taken (`feedCapped`: the cap, never counting the creator) and the
  partitions ever used per kind (`feedParts`, `digestParts`: what the fan-out dispatches to).
- "<streamId>#work" / "<kind>#<ppp>#<key>": a poster's checkpoint for one piece of work
  (the subscribers served so far, `upTo`, then `done`), so a retried message does not post
  again to those, and a duplicate one posts nothing.
- the digest's items (infra/digests.py).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.exceptions import ClientError

from infra.dynamo import Dynamo, Item
from infra.ids import epoch, iso, now

CONNECTIONS, SUBSCRIPTIONS = "connections", "subscriptions"
FEED, DIGEST = "feed", "digest"
LIFETIME_SECONDS = 2 * 3600 + 600  # API Gateway's 2-hour limit, and a margin
# A giftFeed subscriber costs a post per gift, a streamDigest one a post a second: the
# giftFeed's partitions are smaller (its cap keeps them few).
FEED_PER_PARTITION = 25
MAX_PARTITIONS = 256
WORK_SECONDS = 3600  # how long a checkpoint is kept: past any retry of its message


def partitions_for(count: int, per_partition: int) -> int:
    """Partitions for `count` subscribers: a power of two, about `per_partition` in each."""
    wanted = max(1, -(-count // max(per_partition, 1)))
    return min(MAX_PARTITIONS, 1 << (wanted - 1).bit_length())


def channel(stream_id: str, kind: str, partition: int) -> str:
    return f"{stream_id}#{kind}#{partition:03d}"


def meta_key(stream_id: str) -> dict[str, str]:
    return {"channel": f"{stream_id}#meta", "subscriber": "meta"}


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

    async def take_place(
        self, stream_id: str, kind: str, counted: bool, cap: int | None, per_partition: int
    ) -> int | None:
        """Count one more subscriber of `kind` (and, if `counted`, take one of the `cap`
        giftFeed places) and choose how many partitions the stream now spreads over: the
        number, or None when the cap is reached. One UpdateItem (conditional on the cap), and
        one more each time the stream's partitions double."""
        expression = f"ADD #n :one{', #c :one' if counted else ''} SET #p = if_not_exists(#p, :one)"
        names = {"#n": kind, "#p": f"{kind}Parts"}
        values: dict[str, Any] = {":one": 1}
        condition = None
        if counted:
            names["#c"] = f"{kind}Capped"
            if cap is not None:
                condition = "attribute_not_exists(#c) OR #c < :cap"
                values[":cap"] = cap
        updated = await self.dynamo.update(
            SUBSCRIPTIONS,
            meta_key(stream_id),
            expression,
            names=names,
            values=values,
            condition=condition,
        )
        if updated is None:
            return None
        parts = partitions_for(int(updated[kind]), per_partition)
        if parts > int(updated[f"{kind}Parts"]):
            await self.dynamo.update(
                SUBSCRIPTIONS,
                meta_key(stream_id),
                "SET #p = :p",
                names={"#p": f"{kind}Parts"},
                values={":p": parts},
                condition="#p < :p",
            )
        return parts

    async def release_place(self, stream_id: str, kind: str, counted: bool) -> None:
        expression = f"ADD #n :minus{', #c :minus' if counted else ''}"
        names = {"#n": kind, **({"#c": f"{kind}Capped"} if counted else {})}
        await self.dynamo.update(
            SUBSCRIPTIONS,
            meta_key(stream_id),
            expression,
            names=names,
            values={":minus": -1},
            condition="attribute_exists(#n)",
        )

    async def add(
        self,
        at: str,
        connection_id: str,
        subscription_id: str,
        request: dict[str, Any],
        *,
        stream_id: str,
        kind: str,
        counted: bool,
    ) -> None:
        await self.dynamo.put(
            SUBSCRIPTIONS,
            {
                "channel": at,
                "subscriber": f"{connection_id}#{subscription_id}",
                "connectionId": connection_id,
                "subscriptionId": subscription_id,
                "streamId": stream_id,
                "kind": kind,
                "counted": counted,
                # the document and its variables, executed for each gift or digest
                "request": json.dumps(request, sort_keys=True),
                "expiresAt": epoch() + LIFETIME_SECONDS,
            },
        )

    async def sent(self, at: str, connection_id: str, subscription_id: str, ids: list[str]) -> None:
        """The gifts a giftFeed(after:) subscription was sent by its backfill: the fan-out
        does not send them again."""
        await self.dynamo.update(
            SUBSCRIPTIONS,
            {"channel": at, "subscriber": f"{connection_id}#{subscription_id}"},
            "SET sent = :ids",
            values={":ids": ids},
            condition="attribute_exists(channel)",
        )

    async def remove(self, at: str, connection_id: str, subscription_id: str) -> Item | None:
        """Delete the subscription and give its place back (once: the delete returns it)."""
        old = await self.dynamo.delete(
            SUBSCRIPTIONS, {"channel": at, "subscriber": f"{connection_id}#{subscription_id}"}
        )
        if old is not None and old.get("streamId"):
            await self.release_place(old["streamId"], old["kind"], bool(old.get("counted")))
        return old

    async def meta(self, stream_id: str) -> Item:
        return await self.dynamo.get(SUBSCRIPTIONS, meta_key(stream_id), consistent=True) or {}

    async def page(self, at: str, start: str | None, limit: int) -> tuple[list[Item], str | None]:
        """Up to `limit` subscribers of a partition after `start` (a subscriber key), in key
        order; and the last key if more may follow."""
        items, last = await self.dynamo.query(
            SUBSCRIPTIONS,
            "channel = :c",
            names={},
            values={":c": at},
            limit=limit,
            start_key={"channel": at, "subscriber": start} if start else None,
            consistent=True,
        )
        return items, (last["subscriber"] if last else None)

    async def of_stream(self, stream_id: str, kind: str = FEED) -> list[Item]:
        """Every subscriber of a kind (tests and small streams): one Query per partition."""
        meta = await self.meta(stream_id)
        found: list[Item] = []
        for p in range(int(meta.get(f"{kind}Parts", 0))):
            start: str | None = None
            while True:
                page, start = await self.page(channel(stream_id, kind, p), start, 1000)
                found += page
                if start is None:
                    break
        return found


class Checkpoints:
    """Where a poster is in one piece of work (a partition's posts for one batch of gifts or
    one digest): `upTo` the last subscriber served in key order, then `done`."""

    def __init__(self, dynamo: Dynamo) -> None:
        self.dynamo = dynamo

    @staticmethod
    def key(stream_id: str, work: str) -> dict[str, str]:
        return {"channel": f"{stream_id}#work", "subscriber": work}

    async def get(self, stream_id: str, work: str) -> Item:
        found = await self.dynamo.get(SUBSCRIPTIONS, self.key(stream_id, work), consistent=True)
        return found or {}

    async def served(self, stream_id: str, work: str, up_to: str) -> None:
        await self.dynamo.put(
            SUBSCRIPTIONS,
            {**self.key(stream_id, work), "upTo": up_to, "expiresAt": epoch() + WORK_SECONDS},
        )

    async def done(self, stream_id: str, work: str) -> None:
        await self.dynamo.put(
            SUBSCRIPTIONS,
            {**self.key(stream_id, work), "done": True, "expiresAt": epoch() + WORK_SECONDS},
        )


# --- API Gateway's management API -------------------------------------------------------


class Gone(Exception):
    """The connection has closed (API Gateway's GoneException, HTTP 410)."""


class PostFailed(Exception):
    """A post that failed for another reason than a gone connection, after its retries."""


class SigV4:
    """SigV4 for the management API, exactly as botocore's SigV4Auth signs it (a test holds
    them to the same headers), with the day's signing key kept: a post costs two SHA-256 and
    one HMAC instead of botocore's request objects (about 65 µs a post, measured)."""

    SERVICE = "execute-api"

    def __init__(self, endpoint: str, region: str) -> None:
        import botocore.session
        from botocore.auth import _host_from_url

        self.host = _host_from_url(endpoint)
        self.region = region
        self._credentials = botocore.session.get_session().get_credentials()
        self._keys: dict[tuple[str, str, str], bytes] = {}

    def _key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day, self.region))
        if key is None:
            key = f"AWS4{secret}".encode()
            for part in (day, self.region, self.SERVICE, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day, self.region): key}
        return key

    def headers(
        self, method: str, url: str, body: bytes, stamp: str | None = None
    ) -> dict[str, str]:
        from botocore.utils import normalize_url_path

        if self._credentials is None:
            raise PostFailed("no AWS credentials to sign with")
        credentials = self._credentials.get_frozen_credentials()
        stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = stamp[:8]
        names = "host;x-amz-date" + (";x-amz-security-token" if credentials.token else "")
        canonical_headers = f"host:{self.host}\nx-amz-date:{stamp}\n"
        if credentials.token:
            canonical_headers += f"x-amz-security-token:{' '.join(credentials.token.split())}\n"
        path = quote(normalize_url_path(urlsplit(url).path), safe="/~")
        canonical = "\n".join(
            (method, path, "", canonical_headers, names, hashlib.sha256(body).hexdigest())
        )
        scope = f"{day}/{self.region}/{self.SERVICE}/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = hmac.new(
            self._key(credentials.secret_key, day), to_sign.encode(), hashlib.sha256
        )
        headers = {
            "X-Amz-Date": stamp,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature.hexdigest()}",
        }
        if credentials.token:
            headers["X-Amz-Security-Token"] = credentials.token
        return headers


class ManagementApi:
    """PostToConnection and DeleteConnection, as the project sends DynamoDB calls on the local
    server (infra/dynamo_http.py): signed as botocore signs (SigV4, above), sent by aiohttp on
    the running event loop, many in flight on kept-alive connections (`in_flight`), no thread
    per post. Throttling (429) and 5xx are retried with jittered backoff; 410 is `Gone`.

    `endpoint` is https://<api>.execute-api.<region>.amazonaws.com/<stage> on AWS; the local
    cloud's WebSocket events carry a domain name without its port, so it is configured
    (LIVECOINS_FEED_ENDPOINT) rather than read from the event.
    """

    ATTEMPTS = 4

    def __init__(self, endpoint: str, region: str, in_flight: int = 256) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self.in_flight = in_flight
        self.signer = SigV4(self.endpoint, region)
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.posts = 0  # sent (each attempt counts: API Gateway bills each)

    def _client(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.in_flight, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=5, sock_connect=1, sock_read=3),
                skip_auto_headers=("User-Agent",),
            )
            self._loop = loop
        return self._session

    async def post(self, connection_id: str, body: bytes) -> None:
        await self._call("POST", connection_id, body)

    async def close(self, connection_id: str) -> None:
        try:
            await self._call("DELETE", connection_id, b"")
        except Gone:
            pass

    async def _call(self, method: str, connection_id: str, body: bytes) -> None:
        import aiohttp
        from yarl import URL

        url = f"{self.endpoint}/@connections/{quote(connection_id, safe='')}"
        session = self._client()
        for attempt in range(self.ATTEMPTS):
            headers = self.signer.headers(method, url, body)
            if body:
                headers["Content-Type"] = "application/json"
            try:
                self.posts += 1
                async with session.request(
                    method, URL(url, encoded=True), data=body, headers=headers
                ) as answer:
                    status = answer.status
                    if status >= 300:
                        detail = (await answer.read())[:200]
                    else:
                        await answer.release()
            except (aiohttp.ClientError, TimeoutError) as error:  # not sent, or no answer
                status, detail = 0, repr(error).encode()
            if 200 <= status < 300:
                return
            if status == 410:
                raise Gone(connection_id)
            if status not in (0, 429) and status < 500:
                raise PostFailed(f"{method} {connection_id}: HTTP {status} {detail!r}")
            if attempt + 1 < self.ATTEMPTS:
                ceiling = 0.025 * 2**attempt
                await asyncio.sleep(ceiling / 2 + random.random() * ceiling / 2)  # noqa: S311
        raise PostFailed(f"{method} {connection_id}: HTTP {status} {detail!r} after retries")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Dispatch:
    """Hands the posts of one (stream, partition) to a poster invocation: one message on the
    dispatch queue (SQS, template.yaml) each; `delay` seconds later for a digest's tick."""

    MAX_BATCH_BYTES = 240_000  # SQS takes 256 KiB per SendMessageBatch
    AT_ONCE = 16  # a 100,000-viewer digest is 26 batches: two rounds, not the default pool's 5

    def __init__(self, queue_url: str, region: str) -> None:
        import botocore.session
        from botocore.config import Config

        self.queue_url = queue_url
        self.client = botocore.session.get_session().create_client(
            "sqs",
            region_name=region,
            config=Config(
                retries={"total_max_attempts": 4, "mode": "standard"},
                max_pool_connections=self.AT_ONCE,
            ),
        )
        self._threads = ThreadPoolExecutor(self.AT_ONCE, thread_name_prefix="dispatch")

    async def send(self, messages: list[dict[str, Any]], delay: int = 0) -> None:
        batches: list[list[str]] = [[]]
        size = 0
        for message in messages:
            body = json.dumps(message, separators=(",", ":"))
            if batches[-1] and (len(batches[-1]) == 10 or size + len(body) > self.MAX_BATCH_BYTES):
                batches.append([])
                size = 0
            batches[-1].append(body)
            size += len(body)
        await asyncio.gather(*(self._send(batch, delay) for batch in batches if batch))

    async def _send(self, bodies: list[str], delay: int) -> None:
        entries = [
            {"Id": str(n), "MessageBody": body, "DelaySeconds": delay}
            for n, body in enumerate(bodies)
        ]
        send = functools.partial(
            self.client.send_message_batch, QueueUrl=self.queue_url, Entries=entries
        )
        answer = await asyncio.get_running_loop().run_in_executor(self._threads, send)
        failed = answer.get("Failed") or []
        if failed:
            raise ClientError(
                {"Error": {"Code": failed[0].get("Code", ""), "Message": str(failed)}},
                "SendMessageBatch",
            )


def work_key(kind: str, partition: int, key: str) -> str:
    """One poster's work: a kind of message to one partition, for one batch or digest."""
    return f"{kind}#{partition:03d}#{key}"


def batch_key(ids: list[str]) -> str:
    """The same gifts, the same key (a retried batch), whatever their order."""
    return hashlib.blake2b(",".join(sorted(ids)).encode(), digest_size=12).hexdigest()
