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

It also gives ministack's Query a sorted index of each partition's sort keys (`QueryIndex`):
ministack answers a Query by sorting and testing every item of the partition, so a page of 20
of a 100,000-entry ledger took seconds (`make bench`: the local engine's Query row); with the
index, ministack itself answers the Query, over only the items that page can hold.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import os
import re
import resource
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ministack.app as ministack
from hypercorn.asyncio import serve
from hypercorn.config import Config
from ministack.core import persistence
from ministack.services import dynamodb

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


# `#pk = :v`, optionally `AND #sk <op> :w`: the key conditions a page of a partition uses.
_KEY_CONDITION = re.compile(
    r"^\s*(#?[\w.]+)\s*=\s*(:\w+)\s*(?:(?i:AND)\s+(#?[\w.]+)\s*(<=|>=|<|>)\s*(:\w+)\s*)?$"
)
_MARGIN = 2  # items past each end of a page's slice; ministack tests every item it gets anyway


class _Partitions(defaultdict):
    """A table's `items` (partition key -> {sort key: item}); while a Query runs on the
    serving thread, `get` of its partition answers the slice the page can come from."""

    def get(self, key: Any, default: Any = None) -> Any:
        hint = getattr(QueryIndex.hint, "value", None)  # set on the serving thread only
        if hint is not None and hint[0] is self and key == hint[1]:
            return hint[2]
        return dict.get(self, key, default)


class _SortedKeys:
    """One partition's sort keys in ministack's order, kept current as keys are appended."""

    def __init__(self, partition: dict[str, Any], sort_value: Callable[[str], Any]) -> None:
        self.sort_value = sort_value
        pairs = sorted((sort_value(k), k) for k in partition)
        self.values = [v for v, _ in pairs]
        self.keys = [k for _, k in pairs]
        self.signature = self._signature(partition)

    @staticmethod
    def _signature(partition: dict[str, Any]) -> tuple[int, int, Any]:
        return id(partition), len(partition), next(reversed(partition), None)

    def current(self, partition: dict[str, Any]) -> bool:
        """Brought up to date if only appends happened since; False if it must be rebuilt.
        Keys are dict keys in insertion order: after n appends and nothing else, the last key
        seen before them is the n+1-th from the end (a delete anywhere breaks that)."""
        ident, size, last = self._signature(partition)
        if (ident, size, last) == self.signature:
            return True
        old_ident, old_size, old_last = self.signature
        added = size - old_size
        if ident != old_ident or added <= 0:
            return False
        newest = list(itertools.islice(reversed(partition), added + 1))
        if newest[-1] != old_last:
            return False
        for key in newest[:-1]:
            value = self.sort_value(key)
            at = bisect.bisect_right(self.values, value)
            self.values.insert(at, value)
            self.keys.insert(at, key)
        self.signature = (ident, size, last)
        return True


class QueryIndex:
    """ministack's `_query`, given only the items a Limit-ed page of one base-table partition
    can hold (the `Limit` + margin nearest its key condition's bound, in its direction);
    any other Query is ministack's as it is."""

    hint = threading.local()  # (items, partition key, slice) while a Query runs

    def __init__(self, original: Callable[[dict[str, Any]], Any]) -> None:
        self.original = original
        self.sorted: dict[tuple[int, Any], _SortedKeys] = {}

    def __call__(self, data: dict[str, Any]) -> Any:
        try:
            found = self._slice(data)
        except Exception:  # anything unexpected: ministack's own path (and its errors)
            log.exception("engine: the query index failed; ministack answers unindexed")
            found = None
        if found is None:
            return self.original(data)
        QueryIndex.hint.value = found
        try:
            return self.original(data)
        finally:
            QueryIndex.hint.value = None

    def _slice(self, data: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]] | None:
        limit = data.get("Limit")
        if (
            data.get("IndexName")
            or data.get("ExclusiveStartKey")
            or data.get("KeyConditions")
            or data.get("QueryFilter")
            or type(limit) is not int
            or limit < 1
        ):
            return None
        match = _KEY_CONDITION.match(data.get("KeyConditionExpression") or "")
        table = dynamodb._tables.get(dynamodb._normalize_table_name(data.get("TableName")))
        if match is None or not table or not table.get("sk_name"):
            return None
        names = data.get("ExpressionAttributeNames") or {}
        values = data.get("ExpressionAttributeValues") or {}
        pk_name, pk_ref, sk_name, op, bound_ref = match.groups()
        if names.get(pk_name, pk_name) != table["pk_name"]:
            return None
        if sk_name is not None and names.get(sk_name, sk_name) != table["sk_name"]:
            return None
        pk_type = dynamodb._get_attr_type(table, table["pk_name"])
        sk_type = dynamodb._get_attr_type(table, table["sk_name"])
        pk_attr, bound = values.get(pk_ref), values.get(bound_ref) if bound_ref else None
        if not isinstance(pk_attr, dict) or list(pk_attr) != [pk_type]:
            return None  # ministack's own answer: the validation error
        if bound_ref is not None and (not isinstance(bound, dict) or list(bound) != [sk_type]):
            return None
        items = table["items"]
        if type(items) is not _Partitions:
            with dynamodb._lock:  # the TTL reaper's thread reads table["items"] under it
                items = table["items"] = _Partitions(dict, table["items"])
        pk = dynamodb._extract_key_val(pk_attr)
        partition = dict.get(items, pk)
        if not partition:
            return None

        def sort_value(key: str) -> Any:
            return dynamodb._sort_key_value({sk_type: key}, sk_type)

        cache_key = (id(table), pk)
        index = self.sorted.get(cache_key)
        if index is None or not index.current(partition):
            index = self.sorted[cache_key] = _SortedKeys(partition, sort_value)
        low, high = 0, len(index.keys)
        if op is not None:
            at = sort_value(dynamodb._extract_key_val(bound))
            if op == "<":
                high = bisect.bisect_left(index.values, at)
            elif op == "<=":
                high = bisect.bisect_right(index.values, at)
            elif op == ">":
                low = bisect.bisect_right(index.values, at)
            else:
                low = bisect.bisect_left(index.values, at)
        reach = limit + _MARGIN
        if data.get("ScanIndexForward", True) is False:
            low = max(low, high - reach)
        else:
            high = min(high, low + reach)
        low, high = max(0, low - _MARGIN), min(len(index.keys), high + _MARGIN)
        return items, pk, {k: partition[k] for k in index.keys[low:high] if k in partition}


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
    # ministack looks `_query` up by name for every request; =0 measures ministack alone
    if os.environ.get("LIVECOINS_ENGINE_QUERY_INDEX", "1") != "0":
        dynamodb._query = QueryIndex(dynamodb._query)
    asyncio.run(_run(period))


if __name__ == "__main__":
    main()
