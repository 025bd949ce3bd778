"""Benchmark (make bench): the local server (`livecoins serve`, its own process, on its own
engine) with 10,000 WebSocket viewers on one stream's streamDigest: how long a digest takes
from the gift's answer to each viewer, and the server's memory per viewer.

The anchor is a stream of the same server with 100 viewers, interleaved with the big one
(a gift to the small stream, its digest to all 100; a gift to the big one, its digest to all
10,000; RUNS times, gifts more than a second apart so each digest is built at once). The
viewers (graphql-transport-ws over aiohttp, the reference app's streamDigest document) run in
this process, on the same 2 cores as the server: their own reading is in the figures.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.benchmarks import test_local_server
from tests.benchmarks.table import RUNS, Table
from tests.benchmarks.test_local_server import Server, post

pytestmark = pytest.mark.benchmark
# `livecoins serve` on an engine of its own (test_local_server.py's fixtures)
own_engine, server = test_local_server.own_engine, test_local_server.server
BIG, SMALL = 10_000, 100
DOCUMENT = """subscription StreamDigest($streamId: ID!) { streamDigest(streamId: $streamId) {
  sequence status coinsReceived giftsSinceLast coinsSinceLast
  topGifters { rank coins user { id displayName } }
  highlights { id quantity coins createdAt gift { id name } sender { id displayName } } } }"""


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Viewer:
    """One viewer's socket and the sequence numbers and arrival times of its digests."""

    def __init__(self) -> None:
        self.ws: Any = None
        self.received: dict[int, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def open(self, session: aiohttp.ClientSession, url: str, stream: str) -> None:
        self.ws = await session.ws_connect(
            f"{url}/graphql", protocols=["graphql-transport-ws"], max_msg_size=2**20
        )
        await self.ws.send_str('{"type":"connection_init"}')
        ack = await self.ws.receive_json(timeout=60)
        assert ack["type"] == "connection_ack", ack
        payload = {"query": DOCUMENT, "variables": {"streamId": stream}}
        await self.ws.send_json({"id": "d", "type": "subscribe", "payload": payload})
        self.task = asyncio.create_task(self.read())

    async def read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                return
            at = time.perf_counter()
            if '"type":"next"' in message.data:
                sequence = json.loads(message.data)["payload"]["data"]["streamDigest"]["sequence"]
                self.received[sequence] = at


async def open_viewers(
    session: aiohttp.ClientSession, url: str, stream: str, count: int
) -> list[Viewer]:
    viewers = [Viewer() for _ in range(count)]
    for start in range(0, count, 200):  # 200 handshakes at a time
        await asyncio.gather(*(v.open(session, url, stream) for v in viewers[start : start + 200]))
    return viewers


async def digest_latencies(
    session: aiohttp.ClientSession,
    server: Server,
    stream: str,
    viewers: list[Viewer],
    sequence: int,
) -> list[float]:
    """Send a gift to `stream`; ms from its answer to each viewer's digest `sequence`."""
    document = "mutation G($i: SendGiftInput!) { sendGift(input: $i) { __typename } }"
    variables = {
        "i": {"giftId": "rose", "streamId": stream, "idempotencyKey": f"{stream}-{sequence}"}
    }
    await post(session, server.url, document, variables, "fan")
    answered = time.perf_counter()
    deadline = answered + 120
    while any(sequence not in v.received for v in viewers):
        assert time.perf_counter() < deadline, sum(sequence in v.received for v in viewers)
        await asyncio.sleep(0.01)
    return sorted((v.received[sequence] - answered) * 1000 for v in viewers)


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))]


async def test_10_000_viewers_of_one_digest_on_the_local_server(
    server: Server, bench: Table
) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        streams = {}
        for creator in ("star", "small"):
            started = await post(
                session,
                server.url,
                'mutation { startLiveStream(input: {title: "bench"}) { '
                "... on LiveStreamStarted { stream { id } } } }",
                {},
                creator,
            )
            streams[creator] = started["startLiveStream"]["stream"]["id"]
        await post(
            session,
            server.url,
            'mutation { purchaseCoins(input: {packageId: "coins-350", paymentToken: "tok_visa", '
            'idempotencyKey: "digest-bench"}) { __typename } }',
            {},
            "fan",
        )
        before = rss(server.pid)
        small = await open_viewers(session, server.url, streams["small"], SMALL)
        big = await open_viewers(session, server.url, streams["star"], BIG)
        await asyncio.sleep(2)  # the last subscribes reach their group
        connected = rss(server.pid)
        per_viewer = (connected - before) / (BIG + SMALL) / 1024
        latencies: dict[str, list[list[float]]] = {"small": [], "big": []}
        peak = connected
        for sequence in range(1, RUNS + 2):  # the first warms up, and is not kept
            small_ms = await digest_latencies(session, server, streams["small"], small, sequence)
            await asyncio.sleep(1.1)  # past the small stream's next second, and the big one's
            big_ms = await digest_latencies(session, server, streams["star"], big, sequence)
            peak = max(peak, rss(server.pid))
            await asyncio.sleep(1.1)
            if sequence > 1:
                latencies["small"].append(small_ms)
                latencies["big"].append(big_ms)
        for viewer in [*small, *big]:
            await viewer.ws.close()
    note = (
        f"From the gift's answer to each viewer's `next` (one digest per gift, gifts more than "
        f"a second apart); {BIG:,} viewers of one stream against {SMALL} of another on the same "
        "server, interleaved. Server, engine and the viewers' client share 2 cores. Server "
        f"memory: {per_viewer:.0f} KiB RSS per connected viewer ({before / 2**20:.0f} MiB "
        f"before, {connected / 2**20:.0f} MiB with {BIG + SMALL:,} viewers, at most "
        f"{peak / 2**20:.0f} MiB while digests went out)."
    )
    for share, label in ((0.5, "p50"), (0.99, "p99")):
        bench.ratio(
            f"local server, one stream's digest to {BIG:,} WebSocket viewers: delivery {label}",
            f"{SMALL} viewers",
            [percentile(run, share) for run in latencies["small"]],
            f"{BIG:,} viewers",
            [percentile(run, share) for run in latencies["big"]],
            "ms",
            digits=0,
            aim="≤ 2,000 ms" if label == "p99" else "",
            note=note if label == "p50" else "",
        )
    bench.info(
        f"local server: memory per WebSocket viewer ({BIG + SMALL:,} on streamDigest)",
        f"{per_viewer:.0f} KiB RSS; {connected / 2**20:.0f} MiB in all",
    )
    assert all(len(run) == BIG for run in latencies["big"])
    assert statistics.median(percentile(run, 0.99) for run in latencies["big"]) > 0
