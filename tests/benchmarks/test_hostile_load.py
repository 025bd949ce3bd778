"""Benchmark (make bench), issue 9: an ordinary request's latency on the local server while
eight maximally expensive *allowed* requests run, as a ratio to the same request on an idle
server; min and median over interleaved runs. Also the CPU of the worst document each limit
allows. Reported, not asserted.

Client and server share one process and event loop here, and the embedded engine runs beside
them on the same 2 cores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import time
from itertools import count
from typing import Any

import pytest
from graphql import parse

from infra.services import Services
from schema import schema
from schema.limits import MAX_FIELDS, budget, measure
from tests.benchmarks.table import Table
from tests.clients import AiohttpClient, claims_for
from tests.gifting import go_live, send, top_up

pytestmark = pytest.mark.benchmark
STREAMS, RUNS, HEAVY = 100, 5, 8
ORDINARY = {"typename": "{ __typename }", "catalog": "{ gifts { id name coins } }"}
_unique = count()


TEMPLATES = {
    # validation: 200 fields, 100 of them with one response name, each with a child
    "validation": lambda n: "{" + ' liveStream(id: "str_x") { id }' * 100 + "}",
    # execution, breadth: as many aliased 100-stream pages as the cost allows
    "aliases": lambda n: (
        "{"
        + " ".join(
            f"a{i}: liveStreams(first: 100) {{ edges {{ node {{ id }} }} }}" for i in range(n)
        )
        + "}"
    ),
    # execution, depth: the largest page of streams with their rankings and gifts
    "nested": lambda n: (
        f"{{ liveStreams(first: {n}) {{ edges {{ node {{ id title coinsReceived "
        "creator { displayName } topGifters(first: 3) { rank coins user { displayName } } "
        "gifts(first: 2) { edges { node { id quantity } } } } } } }"
    ),
    # lookups: 20 aliased stream lookups with their creators
    "lookups": lambda n: (
        "{"
        + " ".join(f'l{i}: liveStream(id: "str_{i}") {{ id creator {{ id }} }}' for i in range(20))
        + "}"
    ),
}


def candidates(max_cost: int) -> dict[str, str]:
    """Each template at the largest n (1 to 100) the limits allow."""
    found = {}
    for name, template in TEMPLATES.items():
        allowed = [
            n
            for n in range(1, 101)
            if budget(schema._schema).refusal(parse(template(n)), None, {}, max_cost) is None
        ]
        found[name] = template(max(allowed))
    return found


def fresh(document: str) -> str:
    """The same document as a new text: the parser and validation caches miss."""
    return f"{document}\n# {next(_unique)}"


async def latency_ms(api: AiohttpClient, document: str) -> float:
    started = time.perf_counter()
    response = await api.request("POST", json.dumps({"query": document}))
    assert response.status == 200 and "errors" not in response.json, response.body[:300]
    return (time.perf_counter() - started) * 1000


async def test_ordinary_latency_while_eight_expensive_requests_run(
    engine_services: Services,
    aiohttp_client: Any,
    bench: Table,
) -> None:
    from handlers.server import make_app

    services = engine_services
    services.settings = dataclasses.replace(services.settings, rate_limit_per_second=0)
    api = AiohttpClient(await aiohttp_client(make_app(services)), services.settings.jwt_secret)
    fans = [claims_for(f"fan{i}") for i in range(3)]
    for fan in fans:
        await top_up(api, fan, 2)
    for n in range(STREAMS):
        stream = await go_live(api, claims_for(f"creator{n:03d}"), f"Stream {n}")
        if n % 4 == 0:
            for f, fan in enumerate(fans):
                await send(api, fan, f"g{n}-{f}", stream=stream)

    sizes = budget(schema._schema).sizes
    cpu: dict[str, float] = {}
    documents = candidates(services.settings.max_query_cost)
    for name, document in documents.items():
        fields, cost = measure(schema._schema, sizes, parse(document))
        assert fields <= MAX_FIELDS and cost <= services.settings.max_query_cost, (name, cost)
        timings = []
        for _ in range(3):
            started = time.process_time()
            await latency_ms(api, fresh(document))
            timings.append((time.process_time() - started) * 1000)
        cpu[name] = min(timings)
        print(f"\n{name}: {fields} fields, cost {cost}, {cpu[name]:.1f} ms CPU (client included)")
    worst = max(cpu, key=lambda k: cpu[k])
    heavy_document = documents[worst]

    async def heavy(stop: asyncio.Event) -> int:
        done = 0
        while not stop.is_set():
            await latency_ms(api, fresh(heavy_document))
            done += 1
        return done

    for label, ordinary in ORDINARY.items():
        ratios, idle_ms, loaded_ms = [], [], []
        for _ in range(RUNS):  # idle and loaded, interleaved
            idle = statistics.median([await latency_ms(api, ordinary) for _ in range(10)])
            stop = asyncio.Event()
            workers = [asyncio.create_task(heavy(stop)) for _ in range(HEAVY)]
            await asyncio.sleep(0.3)
            loaded = statistics.median([await latency_ms(api, ordinary) for _ in range(10)])
            stop.set()
            finished = await asyncio.gather(*workers)
            assert sum(finished) >= HEAVY
            ratios.append(loaded / idle)
            idle_ms.append(idle)
            loaded_ms.append(loaded)
        print(
            f"\n{label} while {HEAVY} x '{worst}' run: idle {statistics.median(idle_ms):.1f} ms, "
            f"loaded {statistics.median(loaded_ms):.1f} ms (max {max(loaded_ms):.1f}); ratio "
            f"min {min(ratios):.1f}, median {statistics.median(ratios):.1f} over {RUNS} runs"
        )
        bench.ratio(
            f"hostile load (issue 9): `{ORDINARY[label]}` latency while {HEAVY} of the most "
            f"expensive allowed documents ('{worst}') run",
            "idle server",
            idle_ms,
            "loaded",
            loaded_ms,
            "ms",
            digits=1,
            note=(
                "Local server, client in the same process, median of 10 requests per run. CPU "
                "of the worst document each limit allows (client included), ms: "
                + ", ".join(f"{name} {ms:.1f}" for name, ms in cpu.items())
            )
            if label == "typename"
            else "",
        )
