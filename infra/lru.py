"""Small bounded caches: facts that never change once written (a stream's creator), and
values that may be a moment old (TtlCache)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from infra import runtime

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class TtlCache(Generic[K, V]):
    """Values that may be served for `seconds` after they were read (a superstar stream's
    totals and ranking, polled by every viewer); bounded in size. 0 seconds: never cached."""

    def __init__(self, seconds: float, size: int = 10_000) -> None:
        self.seconds = seconds
        self._items: Lru[K, tuple[float, V]] = Lru(size)

    def get(self, key: K) -> V | None:
        if self.seconds <= 0:
            return None
        found = self._items.get(key)
        if found is None or found[0] < runtime.current().monotonic():
            return None
        return found[1]

    def put(self, key: K, value: V) -> V:
        if self.seconds > 0:
            self._items.put(key, (runtime.current().monotonic() + self.seconds, value))
        return value
