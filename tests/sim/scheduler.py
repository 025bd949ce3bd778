"""A seeded scheduler with virtual time: the simulator's only source of interleaving.

Every await on the store or the payment provider parks the calling task (`Scheduler.call`),
and every backoff sleeps on the virtual clock (`SimRuntime.sleep`). When no task can run
(the event loop's ready queue is empty), the scheduler picks one parked call with the seeded
random generator, runs it (or injects a fault instead), advances the clock by a random
latency and wakes the timers that are due. No threads, sockets or real timers are involved,
so one seed replays one run exactly (`Scheduler.trace` is the evidence).
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.runtime import Runtime

# 2026-11-29 23:58:00 UTC: runs of a few virtual minutes cross a UTC day (daily limits).
EPOCH = 1_796_169_480.0


class Crash(BaseException):
    """Raised into the caller's container: the process died at this step."""


@dataclass(order=True)
class _Parked:
    seq: int
    label: str = field(compare=False)
    owner: Any = field(compare=False)  # the container (a simulated process) making the call
    run: Callable[[Parked], Any] = field(compare=False)
    future: asyncio.Future[Any] | None = field(compare=False)  # None: the store's own work


Parked = _Parked


class Scheduler:
    def __init__(self, rng: random.Random, latency: tuple[float, float] = (0.0005, 0.003)):
        self.rng = rng
        self.latency = latency
        self.now = 0.0  # virtual seconds since EPOCH
        self._seq = 0
        self._parked: list[Parked] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self.trace: list[str] = []  # what ran, in order: the replay evidence
        self.steps = 0
        self.background = 0  # parked work no task awaits (a transaction's commit steps)

    # --- what tasks await -------------------------------------------------------------
    async def call(self, label: str, owner: Any, run: Callable[[Parked], Any]) -> Any:
        """Park until the scheduler picks this call; then `run(parked)` gives its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._seq += 1
        self._parked.append(Parked(self._seq, label, owner, run, future))
        return await future

    def spawn(self, label: str, run: Callable[[Parked], Any]) -> None:
        """Park work that no task awaits and no crash cancels: the store's own (a decided
        transaction commits whatever becomes of the process that sent it). It runs when the
        scheduler picks it, like any call; an error in it stops the run."""
        self._seq += 1
        self.background += 1
        self._parked.append(Parked(self._seq, label, None, run, None))

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._timers, (self.now + max(seconds, 0.0), self._seq, future))
        await future

    def jump(self, seconds: float) -> None:
        """Time passes (hours, days): every timer due meanwhile fires at the next step."""
        self.now += seconds
        self.trace.append(f"jump:{seconds:.0f}")

    def drop(self, owner: Any) -> list[Parked]:
        """Remove the calls parked by `owner` (a crashed container)."""
        mine = [p for p in self._parked if p.owner is owner]
        self._parked = [p for p in self._parked if p.owner is not owner]
        return mine

    # --- the driver ---------------------------------------------------------------------
    async def _idle(self) -> None:
        """Return once every other task is blocked on a parked call or a timer."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0)
            if not loop._ready:  # type: ignore[attr-defined]  # CPython's ready queue
                return

    async def drive(self, done: Callable[[], bool]) -> None:
        while True:
            await self._idle()
            if done():
                return
            if self._parked:
                index = self.rng.randrange(len(self._parked))
                self._parked[index], self._parked[-1] = self._parked[-1], self._parked[index]
                parked = self._parked.pop()
                future = parked.future
                if future is None:
                    self.background -= 1
                elif future.done():  # its task was cancelled meanwhile
                    continue
                self.steps += 1
                self.trace.append(f"{parked.seq}:{parked.label}")
                if future is None:
                    parked.run(parked)
                else:
                    try:
                        result = parked.run(parked)
                    except BaseException as error:  # noqa: BLE001 - handed to the caller
                        if not future.done():
                            future.set_exception(error)
                    else:
                        if not future.done():
                            future.set_result(result)
                self.now += self.rng.uniform(*self.latency)
            elif self._timers:
                self.now = max(self.now, self._timers[0][0])
            else:
                raise RuntimeError("deadlock: tasks are waiting but nothing is parked")
            while self._timers and self._timers[0][0] <= self.now:
                _, _, future = heapq.heappop(self._timers)
                if not future.done():
                    future.set_result(None)


class SimRuntime(Runtime):
    """Virtual time and seeded randomness for the code under test."""

    def __init__(self, scheduler: Scheduler, rng: random.Random) -> None:
        self.scheduler = scheduler
        self.rng = rng

    def time(self) -> float:
        return EPOCH + self.scheduler.now

    def monotonic(self) -> float:
        return self.scheduler.now

    async def sleep(self, seconds: float) -> None:
        await self.scheduler.sleep(seconds)

    def randbits(self, k: int) -> int:
        return self.rng.getrandbits(k)

    def randbelow(self, n: int) -> int:
        return self.rng.randrange(n)
