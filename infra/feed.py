"""In-process gift feed: every gift that lands is published to the stream's subscribers.

Publishing never waits: each subscriber has a bounded queue, and one that falls that far
behind is dropped (its subscription ends) instead of slowing gift sending down. Subscribers
may live on another thread's event loop (the local server) than the publisher. Ending a
stream ends its subscriptions (`end`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any, Protocol

_CLOSED = object()
_ENDED = object()


class SlowConsumer(Exception):
    pass


class FeedSource(Protocol):
    """Where giftFeed's resolver reads a stream's gifts: this process's GiftFeed on the local
    server, one gift at a time in the AWS fan-out (handlers/gift_feed.py)."""

    def subscribe(self, stream_id: str) -> AsyncIterator[Any]: ...


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(size)
        self.dropped = False

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

    def end(self, stream_id: str) -> None:
        """The stream has ended: each of its subscriptions completes after what it has."""
        self.publish(stream_id, _ENDED)

    def publish(self, stream_id: str, transfer: Any) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(stream_id, ()))
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.offer, transfer)
            except RuntimeError:  # its loop has closed
                self._remove(stream_id, subscriber)

    def subscribers(self, stream_id: str) -> int:
        with self._lock:
            return len(self._subscribers.get(stream_id, ()))

    def subscribe(self, stream_id: str) -> Subscription:
        """Registered at once, so nothing published after this call is missed."""
        subscriber = _Subscriber(asyncio.get_running_loop(), self.queue_size)
        with self._lock:
            self._subscribers.setdefault(stream_id, set()).add(subscriber)
        return Subscription(self, stream_id, subscriber)

    def _remove(self, stream_id: str, subscriber: _Subscriber) -> None:
        with self._lock:
            group = self._subscribers.get(stream_id)
            if group is not None:
                group.discard(subscriber)
                if not group:
                    del self._subscribers[stream_id]


class Subscription:
    """The transfers published to one stream from now on, until it ends or is closed."""

    def __init__(self, feed: GiftFeed, stream_id: str, subscriber: _Subscriber) -> None:
        self._feed, self._stream_id, self._subscriber = feed, stream_id, subscriber

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return self._unwrap(await self._subscriber.queue.get())

    async def next(self, timeout: float) -> Any:
        """The next transfer; None if none came within `timeout` seconds."""
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
        self._feed._remove(self._stream_id, self._subscriber)

    async def aclose(self) -> None:
        self.close()
