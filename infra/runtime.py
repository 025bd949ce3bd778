"""The process's sources of time and randomness, in one replaceable object.

Production uses the wall clock and `secrets`. The fault simulator (tests/sim) installs a
seeded, virtual-time runtime so that one seed replays one run exactly: every id, shard choice,
backoff and deadline then comes from the seed.
"""

from __future__ import annotations

import asyncio
import secrets
import time


class Runtime:
    def time(self) -> float:
        """Seconds since the epoch (timestamps, TTLs)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines)."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def randbits(self, k: int) -> int:
        return secrets.randbits(k)

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)


_current = Runtime()


def current() -> Runtime:
    return _current


def install(runtime: Runtime) -> Runtime:
    """Replace the process's runtime (the simulator's seeded one); returns the previous one."""
    global _current
    previous, _current = _current, runtime
    return previous
