"""In-process feed: every gift that lands is published to the stream's subscribers, and
summed into the stream's digest (at most one a second).

Publishing never waits: each subscriber has a bounded queue, and one that falls that far
behind is dropped (its subscription ends) instead of slowing gift sending down. Subscribers
may live on another thread's event loop (the local server) than the publisher. Ending a
stream ends its subscriptions (`end`), a digest channel's after one last digest.

A stream's giftFeed subscribers are counted here (the cap, `subscribe(cap=...)`), its
streamDigest subscribers share one `DigestChannel` per stream: the gifts published since its
last digest (`Pending`), and one build a second at most, broadcast to all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from infra.dynamo import Item

_CLOSED = object()
_ENDED = object()
HIGHLIGHTS = 5  # the largest gifts a digest names
DIGEST_SECONDS = 1.0  # at most one digest a second per stream
log = logging.getLogger("livecoins")


class SlowConsumer(Exception):
    pass


class FeedFullError(Exception):
    """The stream already has its cap of giftFeed subscribers."""


class FeedSource(Protocol):
    """Where the feed's resolvers read a stream's gifts and digests when they are handed them:
    the AWS fan-out renders one gift (or digest) at a time (handlers/gift_feed.py). The local
    server's resolvers subscribe to this process's GiftFeed instead."""

    def gifts(self, stream_id: str, after: str | None) -> AsyncIterator[Any]: ...

    def digests(self, stream_id: str) -> AsyncIterator[Any]: ...


def ranked(transfer: Item) -> tuple[int, str]:
    """Highlight order: most coins first, then the earlier gift (ids are time-ordered)."""
    return (-int(transfer.get("coins", 0)), str(transfer.get("id", "")))


@dataclass
class Pending:
    """What landed since a stream's last digest: counts and the largest gifts."""

    gifts: int = 0
    coins: int = 0
    largest: list[Item] = field(default_factory=list)

    def add(self, transfer: Item) -> None:
        self.gifts += 1
        self.coins += int(transfer.get("coins", 0))
        self.largest = sorted([*self.largest, transfer], key=ranked)[:HIGHLIGHTS]

    def merge(self, other: Pending) -> None:
        self.gifts += other.gifts
        self.coins += other.coins
        self.largest = sorted([*self.largest, *other.largest], key=ranked)[:HIGHLIGHTS]


# build(stream id, what landed, sequence, ended) -> the digest (resolvers/feed.py reads totals)
DigestBuilder = Callable[[str, Pending, int, bool], Awaitable[Item]]


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, counted: bool) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(size)
        self.dropped = False
        self.counted = counted  # takes one of the stream's giftFeed places

    def offer(self, item: Any) -> None:  # runs on the subscriber's loop
        if self.dropped:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped = True
            self.queue.get_nowait()
            self.queue.put_nowait(_CLOSED)


class GiftFeed:
    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[_Subscriber]] = {}
        self._digests: dict[str, DigestChannel] = {}

    def end(self, stream_id: str) -> None:
        """The stream has ended: each of its subscriptions completes after what it has."""
        self.publish(stream_id, _ENDED)

    def publish(self, stream_id: str, transfer: Any) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(stream_id, ()))
            channel = self._digests.get(stream_id)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.offer, transfer)
            except RuntimeError:  # its loop has closed
                self._remove(stream_id, subscriber)
        if channel is not None:
            try:
                channel.loop.call_soon_threadsafe(channel.landed, transfer)
            except RuntimeError:
                self._drop_channel(stream_id, channel)

    def subscribers(self, stream_id: str) -> int:
        with self._lock:
            return len(self._subscribers.get(stream_id, ()))

    def subscribe(
        self, stream_id: str, cap: int | None = None, exempt: bool = False
    ) -> Subscription:
        """Registered at once, so nothing published after this call is missed. With `cap`,
        refused (FeedFullError) when the stream has that many subscribers already, unless
        `exempt` (the stream's creator: never refused, and takes no one's place)."""
        subscriber = _Subscriber(asyncio.get_running_loop(), self.queue_size, not exempt)
        with self._lock:
            group = self._subscribers.setdefault(stream_id, set())
            if cap is not None and not exempt and sum(s.counted for s in group) >= cap:
                if not group:
                    del self._subscribers[stream_id]
                raise FeedFullError(stream_id)
            group.add(subscriber)
        return Subscription(self, stream_id, subscriber)

    def subscribe_digest(self, stream_id: str, build: DigestBuilder) -> Subscription:
        """The stream's digests from now on (its channel starts with its first subscriber)."""
        loop = asyncio.get_running_loop()
        subscriber = _Subscriber(loop, self.queue_size, False)
        with self._lock:
            channel = self._digests.get(stream_id)
            if channel is None or channel.loop is not loop or channel.finished:
                channel = DigestChannel(self, stream_id, loop, build)
                self._digests[stream_id] = channel
            channel.subscribers.add(subscriber)
        return Subscription(self, stream_id, subscriber, channel)

    def digest_channel(self, stream_id: str) -> DigestChannel | None:
        with self._lock:
            return self._digests.get(stream_id)

    def _remove(self, stream_id: str, subscriber: _Subscriber) -> None:
        with self._lock:
            group = self._subscribers.get(stream_id)
            if group is not None:
                group.discard(subscriber)
                if not group:
                    del self._subscribers[stream_id]

    def _leave(self, channel: DigestChannel, subscriber: _Subscriber) -> None:
        with self._lock:
            channel.subscribers.discard(subscriber)
            empty = not channel.subscribers
            if empty and self._digests.get(channel.stream_id) is channel:
                del self._digests[channel.stream_id]
        if empty:
            channel.close()

    def _drop_channel(self, stream_id: str, channel: DigestChannel) -> None:
        with self._lock:
            if self._digests.get(stream_id) is channel:
                del self._digests[stream_id]


class DigestChannel:
    """One stream's digests on one event loop: what landed since the last one, at most one
    build a second while gifts land (the first at once), one last build when the stream ends,
    each broadcast to every subscriber of the channel."""

    def __init__(
        self, feed: GiftFeed, stream_id: str, loop: asyncio.AbstractEventLoop, build: DigestBuilder
    ) -> None:
        self.feed, self.stream_id, self.loop, self.build = feed, stream_id, loop, build
        self.subscribers: set[_Subscriber] = set()
        self.pending = Pending()
        self.sequence = 0
        self.last_built = float("-inf")  # loop time of the last build
        self.finished = False
        self._timer: asyncio.TimerHandle | None = None
        self._building: asyncio.Task[None] | None = None
        self._ending = False

    def landed(self, transfer: Any) -> None:  # on the channel's loop
        if transfer is _ENDED:
            self.end()
            return
        if self.finished or self._ending:
            return
        self.pending.add(transfer)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None or self._building is not None or self.finished:
            return
        at = max(self.loop.time(), self.last_built + DIGEST_SECONDS)
        self._timer = self.loop.call_at(at, self._start, False)

    def _start(self, last: bool) -> None:
        self._timer = None
        self._building = self.loop.create_task(self._run(last))

    async def _run(self, last: bool) -> None:
        taken, self.pending = self.pending, Pending()
        try:
            if taken.gifts or last:
                digest = await self.build(self.stream_id, taken, self.sequence + 1, last)
                self.sequence += 1
                self.last_built = self.loop.time()
                for subscriber in list(self.subscribers):
                    subscriber.offer(digest)
        except Exception:  # DynamoDB busy: the gifts wait for the next build
            log.warning("a stream digest could not be built; retrying", exc_info=True)
            taken.merge(self.pending)
            self.pending = taken
            self.last_built = self.loop.time()
            if last:
                self._building = None
                self._timer = self.loop.call_later(DIGEST_SECONDS, self._start, True)
                return
        finally:
            if self._building is asyncio.current_task():
                self._building = None
        if last:
            self._finish()
        elif self._ending:
            self._start(True)
        elif self.pending.gifts:
            self._schedule()

    def end(self) -> None:
        """The stream ended: one last digest (what landed since the previous one, status
        ENDED), then every subscription completes."""
        if self._ending or self.finished:
            return
        self._ending = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._building is None:
            self._start(True)  # else _run starts the last build when the current one ends

    def _finish(self) -> None:
        self.finished = True
        for subscriber in list(self.subscribers):
            subscriber.offer(_ENDED)
        self.feed._drop_channel(self.stream_id, self)

    def close(self) -> None:
        """No subscriber left: stop building."""
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._building is not None:
            self._building.cancel()


class Subscription:
    """The items published to one stream from now on, until it ends or is closed."""

    def __init__(
        self,
        feed: GiftFeed,
        stream_id: str,
        subscriber: _Subscriber,
        channel: DigestChannel | None = None,
    ) -> None:
        self._feed, self._stream_id, self._subscriber = feed, stream_id, subscriber
        self._channel = channel

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return self._unwrap(await self._subscriber.queue.get())

    async def next(self, timeout: float) -> Any:
        """The next item; None if none came within `timeout` seconds."""
        try:
            item = await asyncio.wait_for(self._subscriber.queue.get(), timeout)
        except TimeoutError:
            return None
        return self._unwrap(item)

    def _unwrap(self, item: Any) -> Any:
        if item is _CLOSED:
            self.close()
            raise SlowConsumer("subscriber fell too far behind")
        if item is _ENDED:
            self.close()
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(RuntimeError):
                self._feed._leave(self._channel, self._subscriber)
        else:
            self._feed._remove(self._stream_id, self._subscriber)

    async def aclose(self) -> None:
        self.close()
