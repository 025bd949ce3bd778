"""In-process gift feed: every gift that lands is published to the stream's subscribers.

Publishing never waits: each subscriber has a bounded queue, and one that falls that far
behind is dropped (its subscription ends) instead of slowing gift sending down. Subscribers
may live on another thread's event loop (the local server) than the publisher.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any, Protocol

_CLOSED = object()


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

    async def subscribe(self, stream_id: str) -> AsyncIterator[Any]:
        subscriber = _Subscriber(asyncio.get_running_loop(), self.queue_size)
        with self._lock:
            self._subscribers.setdefault(stream_id, set()).add(subscriber)
        try:
            while True:
                item = await subscriber.queue.get()
                if item is _CLOSED:
                    raise SlowConsumer("subscriber fell too far behind")
                yield item
        finally:
            self._remove(stream_id, subscriber)

    def _remove(self, stream_id: str, subscriber: _Subscriber) -> None:
        with self._lock:
            group = self._subscribers.get(stream_id)
            if group is not None:
                group.discard(subscriber)
                if not group:
                    del self._subscribers[stream_id]
