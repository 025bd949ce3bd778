"""Benchmark (make bench): warm CPU per request through the Lambda handler, DynamoDB answered
in process, against graphql-core executing the same pre-parsed document; and botocore's client
side of the one DynamoDB call a gift makes.

The handler (`make_async_handler`) gets a whole API Gateway event and returns the whole
response (JSON body): the project's HTTP view, Strawberry's extensions (parser and validation
caches, limits, error policy, deadline), execution, the resolvers and the items they build.
The anchor is `graphql.execute` of the same document, parsed and validated beforehand, on the
same schema, resolvers, context and store: what executing the operation costs at least. The
store (tests/sim/store.py's MemoryDynamo, called instead of botocore through `Dynamo.invoke`)
is timed apart and subtracted from both sides, so neither botocore nor the store is counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from graphql import ExecutionResult, get_introspection_query, parse, validate
from graphql import execute as graphql_execute

from handlers.lambda_api import make_async_handler
from infra import dynamo as dynamo_module
from infra.config import Settings
from infra.dynamo import Dynamo, new_client
from infra.payments import SandboxPaymentProvider
from infra.services import Services
from infra.tables import ensure_tables
from resolvers.catalog import seed
from resolvers.context import Context
from resolvers.identity import Identity
from schema import schema
from tests.benchmarks.table import RUNS, Table
from tests.clients import claims_for, lambda_event
from tests.sim.store import MemoryDynamo

pytestmark = pytest.mark.benchmark
ROUNDS = 300  # requests per side per run
CATALOG = (
    "{ coinPackages { id coins price { amount currency formatted } } "
    "gifts { id name coins diamonds } }"
)
SEND = """mutation G($input: SendGiftInput!) { sendGift(input: $input) {
  __typename
  ... on GiftSent { transfer { id coins diamonds quantity gift { id coins }
                               sender { id } recipient { id } stream { id } }
                    wallet { coins diamonds } }
  ... on UserError { message } } }"""


class TimedStore:
    """MemoryDynamo behind `Dynamo.invoke`, with the CPU it spends kept apart."""

    def __init__(self, settings: Settings) -> None:
        self.store = MemoryDynamo()
        ensure_tables(self.store, settings)
        self.cpu = 0.0
        self.transactions: list[dict[str, Any]] = []

    async def invoke(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        started = time.process_time()
        try:
            result: dict[str, Any] = getattr(self.store, operation)(**kwargs)
        finally:
            self.cpu += time.process_time() - started
        if operation == "transact_write_items":
            self.transactions.append(kwargs)
        return result


async def cpu_ms(store: TimedStore, calls: list[Callable[[], Awaitable[Any]]]) -> float:
    """CPU per call in ms, the store's share taken out. The cyclic garbage collector waits
    until the calls are done: a collection landing in one side's loop is noise."""
    gc.collect()
    gc.disable()
    try:
        store.cpu = 0.0
        started = time.process_time()
        for call in calls:
            await call()
        return (time.process_time() - started - store.cpu) / len(calls) * 1000
    finally:
        gc.enable()


async def test_request_cpu(bench: Table) -> None:
    settings = Settings(table_prefix="cpu-")
    store = TimedStore(settings)
    dynamo = Dynamo(settings, client=store.store)
    dynamo.invoke = store.invoke
    services = Services(settings, dynamo, payments=SandboxPaymentProvider())
    await seed(services.catalog)
    handle = make_async_handler(services)

    async def through_handler(event: dict[str, Any]) -> None:
        response = await handle(event)
        assert response["statusCode"] == 200 and '"errors"' not in response["body"], response

    async def data(document: str, variables: dict[str, Any], claims: Any) -> dict[str, Any]:
        body_text = json.dumps({"query": document, "variables": variables})
        event = lambda_event("POST", body_text, claims=claims)
        body = json.loads((await handle(event))["body"])
        assert not body.get("errors"), body
        return body["data"]  # type: ignore[no-any-return]

    creator, viewer = claims_for("cora"), claims_for("vic")
    started = await data(
        'mutation { startLiveStream(input: {title: "x"}) { '
        "... on LiveStreamStarted { stream { id } } } }",
        {},
        creator,
    )
    stream = started["startLiveStream"]["stream"]["id"]
    gifts = ROUNDS * (RUNS + 2)
    for n in range(gifts // 3500 + 1):
        await data(
            'mutation B($k: String!) { purchaseCoins(input: {packageId: "coins-3500", '
            'paymentToken: "tok_visa", idempotencyKey: $k}) { __typename } }',
            {"k": f"buy-{n}"},
            viewer,
        )
    keys = iter(range(10**9))

    def send_variables() -> dict[str, Any]:
        key = f"gift-{next(keys)}"
        return {"input": {"giftId": "rose", "streamId": stream, "idempotencyKey": key}}

    catalog_event = lambda_event("POST", json.dumps({"query": CATALOG}))
    catalog_document, send_document = parse(CATALOG), parse(SEND)
    assert not validate(schema._schema, catalog_document)
    assert not validate(schema._schema, send_document)
    identity = Identity.from_claims(viewer)

    async def execute(document: Any, variables: Any, who: Identity | None) -> None:
        result = graphql_execute(
            schema._schema,
            document,
            context_value=Context(services, who),
            variable_values=variables,
        )
        if not isinstance(result, ExecutionResult):
            result = await result
        assert not result.errors, result.errors

    def catalog_sides() -> tuple[list[Any], list[Any]]:
        anchor = [lambda: execute(catalog_document, None, None)] * ROUNDS
        project = [lambda: through_handler(catalog_event)] * ROUNDS
        return anchor, project

    def gift_sides() -> tuple[list[Any], list[Any]]:
        variables = [send_variables() for _ in range(ROUNDS)]
        anchor = [(lambda v=v: execute(send_document, v, identity)) for v in variables]
        events = [
            lambda_event(
                "POST", json.dumps({"query": SEND, "variables": send_variables()}), claims=viewer
            )
            for _ in range(ROUNDS)
        ]
        project = [(lambda e=e: through_handler(e)) for e in events]
        return anchor, project

    for label, sides, aim in (
        ("catalog query (`coinPackages`, `gifts`: 17 items)", catalog_sides, "≤ 2"),
        ("sendGift (one 8-action transaction), DynamoDB answered in process", gift_sides, "≤ 2"),
    ):
        anchor_ms, project_ms = [], []
        warm_anchor, warm_project = sides()
        await cpu_ms(store, warm_anchor[:50])
        await cpu_ms(store, warm_project[:50])
        for _ in range(RUNS + 2):
            anchor, project = sides()  # built outside the timed loop
            anchor_ms.append(await cpu_ms(store, anchor))
            project_ms.append(await cpu_ms(store, project))
        bench.ratio(
            f"warm CPU per request through the Lambda handler: {label}",
            "graphql-core `execute`, pre-parsed",
            anchor_ms,
            "handler",
            project_ms,
            "ms",
            aim=aim,
            digits=3,
            note=NOTE if label.startswith("catalog") else "",
        )

    botocore_row(bench, store.transactions[-1])
    await introspection_row(bench, services, through_handler, catalog_event)


async def introspection_row(
    bench: Table,
    services: Services,
    through_handler: Callable[[dict[str, Any]], Awaitable[None]],
    catalog_event: dict[str, Any],
) -> None:
    """GraphiQL's full introspection query (the local server allows it; the Lambda only with
    LIVECOINS_INTROSPECTION=1) against the catalog query, both through the handler."""
    services.settings = dataclasses.replace(services.settings, introspection=True)
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    event = lambda_event("POST", json.dumps({"query": query}))
    rounds = ROUNDS // 10
    catalog = [lambda: through_handler(catalog_event)] * rounds
    introspection = [lambda: through_handler(event)] * rounds
    store = TimedStore(services.settings)  # unused: neither reads DynamoDB (catalog cached)
    await cpu_ms(store, introspection[:5])
    ordinary, full = [], []
    for _ in range(RUNS + 2):
        ordinary.append(await cpu_ms(store, catalog))
        full.append(await cpu_ms(store, introspection))
    bench.ratio(
        "GraphiQL's introspection query through the Lambda handler (introspection on)",
        "the catalog query",
        ordinary,
        "introspection",
        full,
        "ms CPU",
        digits=2,
        note='README "Limits": why introspection is off on the Lambda.',
    )


NOTE = (
    "Both sides run the same schema, resolvers, context and in-process store, whose CPU is "
    "subtracted; the handler adds the HTTP view (event in, JSON response out), the parser and "
    "validation caches, the limits, the error policy and the deadline."
)


def botocore_row(bench: Table, transaction: dict[str, Any]) -> None:
    """botocore's client side of a gift's TransactWriteItems: serialising, signing, sending
    and parsing, with the HTTP exchange answered by a canned reply (no network, no server)."""

    def client(validate: bool) -> Any:
        made = new_client(Settings(dynamodb_endpoint="http://127.0.0.1:9"))
        if validate:  # botocore's default: the project's client with validation back on
            made = dynamo_module._session.create_client(
                "dynamodb",
                region_name="us-east-1",
                endpoint_url="http://127.0.0.1:9",
                config=Config(retries={"total_max_attempts": 1}),
            )

        def reply(request: Any, **_: Any) -> AWSResponse:
            return AWSResponse(request.url, 200, {"x-amzn-requestid": "r"}, _Raw(b"{}"))

        made.meta.events.register("before-send.dynamodb", reply)
        return made

    default, ours = client(True), client(False)

    def per_call(target: Any) -> float:
        gc.collect()
        gc.disable()
        try:
            started = time.process_time()
            for _ in range(ROUNDS):
                target.transact_write_items(**transaction)
            return (time.process_time() - started) / ROUNDS * 1000
        finally:
            gc.enable()

    for target in (default, ours):
        for _ in range(50):
            target.transact_write_items(**transaction)
    samples: list[list[float]] = [[], []]
    for _ in range(RUNS + 2):
        samples[0].append(per_call(default))
        samples[1].append(per_call(ours))
    bench.ratio(
        "botocore's client side of sendGift's TransactWriteItems (8 actions), reply canned",
        "botocore's defaults",
        samples[0],
        "the project's client (`parameter_validation=False`)",
        samples[1],
        "ms CPU",
        digits=3,
        note=(
            "Serialising, signing, the HTTP request and the reply's parsing, without a network: "
            "a `before-send` hook answers. Parameter validation re-checks every request the "
            "project builds itself, which DynamoDB checks again anyway; off, a malformed "
            "request is DynamoDB's ValidationException instead of a local ParamValidationError "
            "(infra/dynamo.py)."
        ),
    )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body

    def read(self, *_: Any, **__: Any) -> bytes:
        return self.body


if __name__ == "__main__":  # pragma: no cover - a quick look without pytest
    table = Table()
    asyncio.run(test_request_cpu(table))
    print(table.render())
