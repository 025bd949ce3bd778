"""Benchmark (make bench): the local server (`livecoins serve`, its own process) against the
engine's raw rate, and how a ledger page's latency grows with the caller's own partition.

Server against engine: 32 clients at once, each sending its next request when the last one
answers. The server's side is HTTP to `livecoins serve` (HS256 token, GraphQL, botocore, the
engine); the engine's raw side is the same DynamoDB call made directly with boto3 from 32
threads: for sendGift the very transaction the resolver builds (`Recorder` keeps it from
`resolvers.gifts`, with fresh ids, before the timed phase), for `me { wallet }` its GetItem.
Both load generators run in this process; the engine and the server each in their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import jwt
import pytest
from botocore.config import Config

from infra.config import LOCAL_JWT_SECRET, Settings
from infra.dynamo import Dynamo
from infra.engine import LocalEngine, free_port
from infra.services import Services
from infra.tables import ensure_tables
from resolvers.context import Context
from resolvers.gifts import send_gift
from resolvers.identity import Identity
from tests.benchmarks.table import RUNS, Table
from tests.clients import claims_for
from tests.conftest import ENGINE

pytestmark = pytest.mark.benchmark
ROOT = Path(__file__).resolve().parents[2]
CLIENTS, PER_CLIENT = 32, 12
GIFT = """mutation G($input: SendGiftInput!) { sendGift(input: $input) {
  __typename ... on GiftSent { transfer { id } } } }"""
WALLET = "{ me { wallet { coins } } }"
LEDGER = "{ me { transactions(first: 20) { edges { node { kind coins } } } } }"
ROWS = 100_000


@dataclasses.dataclass
class Server:
    url: str
    settings: Settings
    services: Services  # this process's, on the server's tables
    pid: int
    engine_pid: int


@pytest.fixture(scope="module")
def own_engine() -> Iterator[LocalEngine]:
    """An engine of this module's own, whose process CPU can be read."""
    engine = LocalEngine(str(ENGINE), data_dir=None)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def server(own_engine: LocalEngine) -> Iterator[Server]:
    """`livecoins serve` on its own engine, rate limit off."""
    engine = own_engine.endpoint
    assert own_engine.process is not None
    port = free_port()
    env = {
        **os.environ,
        "LIVECOINS_DYNAMODB_ENDPOINT": engine,
        "LIVECOINS_TABLE_PREFIX": "srv-",
        "LIVECOINS_RATE_LIMIT_PER_SECOND": "0",
        "PORT": str(port),
    }
    process = subprocess.Popen(
        # this checkout's code (the `livecoins` script imports the installed one)
        [sys.executable, "-m", "handlers.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # its access log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        settings = dataclasses.replace(Settings(), dynamodb_endpoint=engine, table_prefix="srv-")
        yield Server(url, settings, Services.build(settings), process.pid, own_engine.process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def token(sub: str) -> str:
    claims = {**claims_for(sub), "exp": int(time.time()) + 3600}
    return jwt.encode(claims, LOCAL_JWT_SECRET, algorithm="HS256")


async def post(
    session: aiohttp.ClientSession, url: str, document: str, variables: Any, sub: str | None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token(sub)}"} if sub else {}
    async with session.post(
        f"{url}/graphql", json={"query": document, "variables": variables}, headers=headers
    ) as response:
        body: dict[str, Any] = await response.json()
        assert response.status == 200 and not body.get("errors"), body
        return body["data"]  # type: ignore[no-any-return]


def raw_client(engine: str) -> Any:
    """A boto3 client as anyone would make one (validation on), with the server's pool size."""
    return boto3.client(
        "dynamodb",
        endpoint_url=engine,
        region_name="us-east-1",
        config=Config(max_pool_connections=CLIENTS),
    )


def raw_rate(calls: list[Callable[[], Any]]) -> float:
    """Calls a second, made by CLIENTS threads at once."""
    pending = iter(calls)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                call = next(pending, None)
            if call is None:
                return
            call()

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(calls) / (time.perf_counter() - started)


async def server_rate(
    session: aiohttp.ClientSession, url: str, requests: list[tuple[str, Any, str]]
) -> float:
    """Requests a second, CLIENTS at a time, each client sending its next when one answers."""
    pending = iter(requests)

    async def client() -> None:
        for document, variables, sub in pending:
            await post(session, url, document, variables, sub)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return len(requests) / (time.perf_counter() - started)


class Recorder:
    """Dynamo.invoke for building the raw side's calls: reads go to the engine, a transaction
    is kept (not sent) and answered as applied."""

    def __init__(self, dynamo: Dynamo) -> None:
        self.forward = dynamo.invoke
        self.kept: list[dict[str, Any]] = []

    async def invoke(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        if operation == "transact_write_items":
            self.kept.append(kwargs)
            return {}
        return await self.forward(operation, kwargs)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU per request of each process taking part: this one (the load generator), the
    server and the engine."""

    def __init__(self, server: Server) -> None:
        self.pids = {"server": server.pid, "engine": server.engine_pid}
        self.samples: dict[str, dict[str, list[float]]] = {}

    async def measure(self, side: str, run: Callable[[], Any], requests: int) -> float:
        before = {name: process_cpu(pid) for name, pid in self.pids.items()}
        mine = time.process_time()
        rate = await run()
        spent = {name: process_cpu(pid) - before[name] for name, pid in self.pids.items()}
        spent["load generator"] = time.process_time() - mine
        for name, seconds in spent.items():
            if name == "server" and side == "raw":
                continue
            self.samples.setdefault(side, {}).setdefault(name, []).append(seconds / requests * 1000)
        return float(rate)

    def summary(self, side: str) -> str:
        parts = self.samples[side]
        return ", ".join(f"{name} {statistics.median(ms):.2f}" for name, ms in parts.items())

    def total(self, side: str) -> float:
        return sum(statistics.median(ms) for ms in self.samples[side].values())


async def test_server_against_the_engines_raw_rate(server: Server, bench: Table) -> None:
    engine = server.settings.dynamodb_endpoint
    assert engine is not None
    total = CLIENTS * PER_CLIENT
    viewers = [f"viewer{i:02d}" for i in range(CLIENTS)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as session:
        started = await post(
            session,
            server.url,
            'mutation { startLiveStream(input: {title: "bench"}) { '
            "... on LiveStreamStarted { stream { id } } } }",
            {},
            "star",
        )
        stream = started["startLiveStream"]["stream"]["id"]
        for viewer in viewers:  # 3,500 coins each: every gift below is a 1-coin rose
            await post(
                session,
                server.url,
                'mutation { purchaseCoins(input: {packageId: "coins-3500", '
                'paymentToken: "tok_visa", idempotencyKey: "bench"}) { __typename } }',
                {},
                viewer,
            )
        # the raw side's transactions, built by the resolver itself (not sent)
        services = server.services
        recorder = Recorder(services.dynamo)
        services.dynamo.invoke = recorder.invoke
        for n in range(total * (RUNS + 1)):
            viewer = viewers[n % CLIENTS]
            await send_gift(
                Context(services, Identity.from_claims(claims_for(viewer))),
                "rose",
                stream,
                None,
                1,
                f"raw-{n}",
            )
        transactions = iter(recorder.kept)
        client = raw_client(engine)
        wallet_get = {"TableName": server.settings.table("accounts"), "Key": {"id": {"S": ""}}}

        def gift_calls() -> list[Callable[[], Any]]:
            batch = [next(transactions) for _ in range(total)]
            return [(lambda t=t: client.transact_write_items(**t)) for t in batch]

        def wallet_calls() -> list[Callable[[], Any]]:
            keys = [
                {**wallet_get, "Key": {"id": {"S": viewers[n % CLIENTS]}}} for n in range(total)
            ]
            return [(lambda k=k: client.get_item(**k)) for k in keys]

        sequence = iter(range(10**9))

        def gift_requests() -> list[tuple[str, Any, str]]:
            return [
                (
                    GIFT,
                    {
                        "input": {
                            "giftId": "rose",
                            "streamId": stream,
                            "idempotencyKey": f"srv-{next(sequence)}",
                        }
                    },
                    viewers[n % CLIENTS],
                )
                for n in range(total)
            ]

        def wallet_requests() -> list[tuple[str, Any, str]]:
            return [(WALLET, {}, viewers[n % CLIENTS]) for n in range(total)]

        # warm both paths (connections, caches, the stream's facts)
        raw_rate(gift_calls()[:CLIENTS])
        await server_rate(session, server.url, gift_requests()[:CLIENTS])
        for label, raw_calls, requests in (
            ("sendGift (1 TransactWriteItems of 8 actions)", gift_calls, gift_requests),
            ("`me { wallet }` (1 GetItem)", wallet_calls, wallet_requests),
        ):
            raw, served = [], []
            meter = CpuMeter(server)
            for _ in range(RUNS):
                calls, batch = raw_calls(), requests()
                raw.append(
                    await meter.measure(
                        "raw", lambda c=calls: asyncio.to_thread(raw_rate, c), total
                    )
                )
                served.append(
                    await meter.measure(
                        "server", lambda b=batch: server_rate(session, server.url, b), total
                    )
                )
            raw_total, server_total = meter.total("raw"), meter.total("server")
            bench.ratio(
                f"local server vs its engine's raw rate, 32 clients: {label}",
                "boto3 → engine",
                raw,
                "HTTP → `livecoins serve` → engine",
                served,
                "/s",
                aim="≥ 0.8",
                digits=0,
                note=(
                    f"CPU per request, ms (median): raw: {meter.summary('raw')}; server: "
                    f"{meter.summary('server')}. Client, server and engine share 2 cores (with "
                    "whatever else runs on them): where both sides are CPU-bound the ratio is "
                    f"about their totals' inverse, {raw_total:.2f} / {server_total:.2f} = "
                    f"{raw_total / server_total:.2f}. " + SERVER_NOTE
                ),
            )


SERVER_NOTE = (
    "The server does what the raw call does (botocore's client side, sent with aiohttp on its "
    "event loop: infra/dynamo_http.py) plus its HTTP server, the token check and GraphQL; the "
    "load generator's HTTP client replaces the raw side's botocore."
)


def fill_partition(client: Any, table: str, account: str, rows: int) -> None:
    """`rows` ledger entries in `account`'s own partition (PURCHASE of 0 coins, so the ledger
    still sums to the wallet), oldest first."""
    for start in range(0, rows, 25):
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "accountId": {"S": account},
                        "entryId": {"S": f"tx_0{i:025d}"},
                        "kind": {"S": "PURCHASE"},
                        "coins": {"N": "0"},
                        "diamonds": {"N": "0"},
                        "referenceId": {"S": f"fill-{i}"},
                        "createdAt": {"S": "2026-01-01T00:00:00+00:00"},
                    }
                }
            }
            for i in range(start, min(start + 25, rows))
        ]
        client.batch_write_item(RequestItems={table: items})


async def test_ledger_page_latency_with_a_big_own_partition(server: Server, bench: Table) -> None:
    """`me { transactions(first: 20) }` for a caller with 100,000 entries in their own ledger
    partition, against the same query for a caller with 20 (a full page either way), asked in
    turn, so drift hits both."""
    assert server.settings.dynamodb_endpoint is not None
    client = raw_client(server.settings.dynamodb_endpoint)
    table = server.settings.table("ledger")
    await asyncio.to_thread(fill_partition, client, table, "small", 20)
    started = time.perf_counter()
    await asyncio.to_thread(fill_partition, client, table, "big", ROWS)
    fill_seconds = time.perf_counter() - started
    async with aiohttp.ClientSession() as session:

        async def latency_ms(sub: str) -> float:
            timings = []
            for _ in range(5):
                began = time.perf_counter()
                data = await post(session, server.url, LEDGER, {}, sub)
                timings.append((time.perf_counter() - began) * 1000)
                assert len(data["me"]["transactions"]["edges"]) == 20
            return statistics.median(timings)

        await latency_ms("small")
        await latency_ms("big")
        small, big = [], []
        for _ in range(RUNS):
            small.append(await latency_ms("small"))
            big.append(await latency_ms("big"))
    bench.ratio(
        "local `me { transactions(first: 20) }`, 100,000 rows in the caller's own partition",
        "20 rows",
        small,
        "100,000 rows",
        big,
        "ms",
        aim="≤ 1.5",
        digits=1,
        note=(
            f"Median of 5 requests per run through `livecoins serve`; filling took "
            f"{fill_seconds:.0f} s. " + LEDGER_NOTE
        ),
    )


LEDGER_NOTE = (
    "ministack answers a Query by sorting and testing the whole partition (next row); the "
    "local engine's launcher gives it a sorted index of each partition's sort keys "
    "(handlers/engine_launcher.py, `QueryIndex`), so a page reads the items it can hold. "
    "DynamoDB's own Query cost does not grow with the partition: the table layout is unchanged."
)


def query_ms(client: Any, table: str, account: str) -> float:
    """Median of 3: one page of 21, newest first, as `me { transactions(first: 20) }` asks."""
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        client.query(
            TableName=table,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": "accountId"},
            ExpressionAttributeValues={":pk": {"S": account}},
            ScanIndexForward=False,
            Limit=21,
        )
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


def test_engine_query_with_and_without_the_index(server: Server, bench: Table) -> None:
    """The same Query of a 100,000-item partition, on an engine without the launcher's index
    (LIVECOINS_ENGINE_QUERY_INDEX=0) and on the server's engine, which has it."""
    assert server.settings.dynamodb_endpoint is not None
    indexed = raw_client(server.settings.dynamodb_endpoint)
    table = server.settings.table("ledger")
    if not indexed.query(
        TableName=table,
        KeyConditionExpression="accountId = :pk",
        ExpressionAttributeValues={":pk": {"S": "big"}},
        Limit=1,
    )["Items"]:
        fill_partition(indexed, table, "big", ROWS)
    previous = os.environ.get("LIVECOINS_ENGINE_QUERY_INDEX")
    os.environ["LIVECOINS_ENGINE_QUERY_INDEX"] = "0"
    try:
        plain = LocalEngine(str(ENGINE), data_dir=None)
        plain.start()
    finally:
        if previous is None:
            del os.environ["LIVECOINS_ENGINE_QUERY_INDEX"]
        else:
            os.environ["LIVECOINS_ENGINE_QUERY_INDEX"] = previous
    try:
        unindexed = raw_client(plain.endpoint)
        ensure_tables(unindexed, server.settings)
        fill_partition(unindexed, table, "big", ROWS)
        query_ms(unindexed, table, "big")
        query_ms(indexed, table, "big")
        alone, with_index = [], []
        for _ in range(RUNS):
            alone.append(query_ms(unindexed, table, "big"))
            with_index.append(query_ms(indexed, table, "big"))
    finally:
        plain.stop()
    bench.ratio(
        "local engine: Query `Limit 21` newest first, one 100,000-item partition, boto3",
        "ministack alone",
        alone,
        "with the launcher's index",
        with_index,
        "ms",
        digits=1,
        note=(
            "The engine's limit, measured: ministack sorts and tests every item of the partition "
            "for each Query; the anchor is that cost at 100,000 items."
        ),
    )
