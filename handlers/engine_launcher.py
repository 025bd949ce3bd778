"""Runs ministack, the local DynamoDB engine, and saves its state every few seconds.

Run by the engine's own interpreter (`.venv-engine/bin/python -I handlers/engine_launcher.py`,
which `infra/engine.py` does), never imported: it imports nothing from LiveCoins, whose
virtualenv has graphql-core 3.3 where ministack pins 3.2. `sam build` does not ship it.

ministack by itself saves its state (PERSIST_STATE=1, to STATE_DIR) only at a clean stop, from
its ASGI lifespan shutdown. This serves ministack's ASGI app with hypercorn as its own entry
point does, and while it runs also saves every LIVECOINS_ENGINE_SAVE_SECONDS (default 2) through
ministack's persistence API:

- the snapshot is each loaded service's `get_state()` (deep copies), taken on the event loop
  that serves requests. ministack applies every DynamoDB request, TransactWriteItems included,
  synchronously on that loop, so the snapshot holds every table at one moment between two
  requests. All DynamoDB tables are in one service state, hence in one file.
- it is written off the loop by `persistence.save_state`, which writes `<service>.json.tmp` and
  renames it over `<service>.json`: a kill during a save leaves the previous save whole.

SIGTERM or SIGINT stop it cleanly: the save in progress (if any) finishes, then hypercorn stops
serving and ministack's own shutdown saves one last time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import ministack.app as ministack
from hypercorn.asyncio import serve
from hypercorn.config import Config
from ministack.core import persistence

log = logging.getLogger("livecoins.engine")


def _check_saved_state() -> None:
    """Refuse to start on a saved state ministack cannot load.

    ministack logs such a file and starts empty; the next periodic save would then replace it
    with that empty state within seconds.
    """
    for saved in sorted(Path(persistence.STATE_DIR).glob("*.json")):
        if persistence.load_state(saved.stem) is None:
            sys.exit(f"engine: {saved} cannot be loaded; move it away to start afresh")


def _snapshot() -> dict[str, Any]:
    # The same {service: get_state} mapping ministack's shutdown hands to persistence.save_all.
    states = {}
    for name, get_state in ministack._build_persistence_save_dict().items():
        state = get_state()
        if state is not None:  # None: nothing to save, leave its file alone (as save_all does)
            states[name] = state
    return states


def _write(states: dict[str, Any]) -> None:
    for name, state in states.items():
        persistence.save_state(name, state)


# DynamoDB actions that never write: a request with any other X-Amz-Target marks the state changed.
READS = {
    "GetItem",
    "BatchGetItem",
    "Query",
    "Scan",
    "TransactGetItems",
    "DescribeTable",
    "ListTables",
}


class Engine:
    """ministack's ASGI app, noting when a request that may have written has finished."""

    def __init__(self) -> None:
        self.changed = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await ministack.app(scope, receive, send)
        finally:
            if scope["type"] == "http" and scope["path"] != "/_ministack/health":
                target = dict(scope["headers"]).get(b"x-amz-target", b"")
                self.changed |= target.decode().rpartition(".")[2] not in READS

    async def save_every(self, period: float, stop: asyncio.Event) -> None:
        """Save when something changed, at most every `period` seconds and at most a fifth of
        the time: after a save that took t seconds the next waits max(period, 4 t)."""
        wait = period
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                return
            if not self.changed:
                continue
            started = time.monotonic()
            self.changed = False
            try:
                states = _snapshot()  # on the loop: no request runs meanwhile
            except Exception:  # e.g. the TTL reaper thread deleting items mid-copy: next time
                log.exception("engine: snapshot failed")
                self.changed = True
                continue
            await asyncio.to_thread(_write, states)
            took = time.monotonic() - started
            if 4 * took > period and wait == period:
                log.warning("engine: a save took %.2f s: saves now wait 4 times as long", took)
            wait = max(period, 4 * took)


async def _run(period: float) -> None:
    config = Config()
    host, port = os.environ.get("BIND_HOST", "127.0.0.1"), os.environ.get("GATEWAY_PORT", "4566")
    config.bind = [f"{host}:{port}"]
    config.keep_alive_timeout = 75
    config.loglevel = ministack.LOG_LEVEL
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    engine = Engine()
    saver = (
        asyncio.create_task(engine.save_every(period, stop)) if persistence.PERSIST_STATE else None
    )

    async def stopped() -> None:
        await stop.wait()
        if saver is not None:
            await saver  # a save in progress ends before ministack's final one starts

    await serve(engine, config, shutdown_trigger=stopped)


def main() -> None:
    period = float(os.environ.get("LIVECOINS_ENGINE_SAVE_SECONDS", "2"))
    if period <= 0:
        sys.exit("engine: LIVECOINS_ENGINE_SAVE_SECONDS must be positive")
    if persistence.PERSIST_STATE:
        _check_saved_state()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # as ministack's own entry point
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_run(period))


if __name__ == "__main__":
    main()
