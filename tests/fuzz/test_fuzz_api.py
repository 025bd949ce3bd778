"""Issue 9: property-based fuzzing of both entrypoints.

Valid and invalid GraphQL documents generated from the exported SDL (hypothesis-graphql),
their variables, malformed HTTP bodies and query strings, and (on the Lambda) malformed API
Gateway events, sent as anonymous, minor, adult and admin callers. Whatever the caller sends:
no 5xx, no "Internal error.", no stack trace or internal detail in the response; the ledger
promise holds after the run (tests/conftest.py checks it when the services fixture ends).

`make test` runs LIVECOINS_FUZZ_EXAMPLES (1,000) per entrypoint within LIVECOINS_FUZZ_SECONDS
(150); `make fuzz` runs more. No per-example deadline (a shared 2-core machine).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from tests.clients import Client, claims_for, lambda_event

EXAMPLES = int(os.environ.get("LIVECOINS_FUZZ_EXAMPLES", "1000"))
SECONDS = float(os.environ.get("LIVECOINS_FUZZ_SECONDS", "150"))
SDL = (Path(__file__).resolve().parents[2] / "schema" / "schema.graphql").read_text()
CALLERS = [
    None,
    claims_for("fuzz-adult"),
    claims_for("fuzz-minor", birthdate="2014-01-01"),
    claims_for("fuzz-admin", admin=True),
]
# What must never reach a client: our internals and their words.
LEAKS = (
    "Internal error.",
    "Traceback",
    'File "',
    "botocore",
    "An error occurred (",
    "test-accounts",
    "RuntimeError",
    "KeyError",
    "AttributeError",
    "TypeError",
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
VARIABLE_DOCS = [
    "query Q($n: Int!, $a: String) { me { transactions(first: $n, after: $a) { edges { cursor } } "
    "} }",
    "query Q($id: ID!) { liveStream(id: $id) { id topGifters { rank } gifts { edges { cursor } } "
    "} }",
    "mutation M($input: SendGiftInput!) { sendGift(input: $input) { __typename } }",
    "mutation M($input: PurchaseCoinsInput!) { purchaseCoins(input: $input) { __typename } }",
    "mutation M($input: UpdateProfileInput!) { updateProfile(input: $input) { __typename } }",
    "mutation M($input: RequestWithdrawalInput!) { requestWithdrawal(input: $input) "
    "{ __typename } }",
    "query Q($id: ID!) { user(id: $id) { id displayName } event(id: $id) { id } "
    "video(id: $id) { id } }",
]


def _post(document: Any, variables: Any = None) -> dict[str, Any]:
    return {"method": "POST", "body": json.dumps({"query": document, "variables": variables})}


graphql_requests = st.one_of(
    queries(SDL).map(_post),
    queries(SDL, mode=Mode.NEGATIVE).map(_post),
    mutations(SDL).map(_post),
    mutations(SDL, mode=Mode.NEGATIVE).map(_post),
    st.builds(
        _post,
        st.sampled_from(VARIABLE_DOCS),
        st.dictionaries(st.sampled_from(["n", "a", "id", "input"]), json_values, max_size=3),
    ),
    st.builds(
        _post,
        st.sampled_from(VARIABLE_DOCS),
        st.fixed_dictionaries(
            {
                "input": st.dictionaries(
                    st.sampled_from(
                        [
                            "giftId",
                            "streamId",
                            "videoId",
                            "quantity",
                            "idempotencyKey",
                            "packageId",
                            "paymentToken",
                            "displayName",
                            "diamonds",
                        ]
                    ),
                    json_values | st.text(),
                    max_size=5,
                )
            }
        ),
    ),
)
malformed_requests = st.one_of(
    st.builds(lambda b: {"method": "POST", "body": b}, st.binary(max_size=200)),
    st.builds(lambda v: {"method": "POST", "body": json.dumps(v)}, json_values),
    st.builds(lambda t: {"method": "POST", "body": t}, st.text(max_size=200)),
    st.builds(lambda t: _post(t), st.text(max_size=200)),
    st.builds(
        lambda q: {"method": "GET", "query": q},
        st.dictionaries(
            st.sampled_from(["query", "variables", "operationName", "extensions"]),
            st.text(max_size=60),
            max_size=4,
        ),
    ),
    st.builds(lambda m: {"method": m, "body": "{}"}, st.sampled_from(["PUT", "DELETE", "PATCH"])),
)
requests = st.tuples(
    st.one_of(graphql_requests, graphql_requests, malformed_requests), st.sampled_from(CALLERS)
)


def _outcome(status: int, body: str) -> str:
    """HTTP status, and for 200 whether the operation ran (data) or was refused (errors)."""
    if status != 200:
        return str(status)
    try:
        answer = json.loads(body)
    except ValueError:
        return "200 not JSON"
    return "200 data" if answer.get("data") else "200 errors"


def check(status: int, body: str, sent: Any) -> None:
    assert status < 500, (status, body[:500], sent)
    leaked = [word for word in LEAKS if word in body]
    assert not leaked, (leaked, body[:500], sent)


class Budget:
    def __init__(self) -> None:
        self.started, self.sent = time.monotonic(), 0
        self.outcomes: Counter[str] = Counter()

    def spent(self) -> bool:
        return time.monotonic() - self.started > SECONDS


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


async def test_fuzz_graphql_and_http(api: Client, fuzz_app_settings: None) -> None:
    budget, loop = Budget(), asyncio.get_running_loop()

    @FUZZ
    @given(requests)
    def one(example: tuple[dict[str, Any], dict[str, Any] | None]) -> None:
        if budget.spent():
            return
        request, caller = example
        sending = api.request(
            request["method"], request.get("body"), request.get("query"), claims=caller
        )
        response = asyncio.run_coroutine_threadsafe(sending, loop).result()
        budget.sent += 1
        budget.outcomes[_outcome(response.status, response.body)] += 1
        check(response.status, response.body, example)

    # Hypothesis drives sync functions: it runs in a thread, each request on the test's loop.
    await asyncio.to_thread(one)
    spent = time.monotonic() - budget.started
    print(f"\nfuzz[{api.kind}]: {budget.sent} requests in {spent:.1f} s: {dict(budget.outcomes)}")
    assert budget.sent >= min(EXAMPLES, 1000) or budget.spent()


def _mutate(event: dict[str, Any], path: list[str], value: Any, delete: bool) -> dict[str, Any]:
    event = copy.deepcopy(event)
    node: Any = event
    for key in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            break
        node = node[key]
    else:
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return event


EVENT_PATHS = [
    ["body"],
    ["isBase64Encoded"],
    ["headers"],
    ["headers", "content-type"],
    ["queryStringParameters"],
    ["requestContext"],
    ["requestContext", "http"],
    ["requestContext", "http", "method"],
    ["requestContext", "authorizer"],
    ["requestContext", "authorizer", "jwt"],
    ["requestContext", "authorizer", "jwt", "claims"],
    ["requestContext", "authorizer", "jwt", "claims", "sub"],
    ["requestContext", "authorizer", "jwt", "claims", "birthdate"],
    ["requestContext", "authorizer", "jwt", "claims", "cognito:groups"],
    ["rawPath"],
    ["cookies"],
    ["pathParameters"],
]
events = st.builds(
    _mutate,
    st.builds(
        lambda body, claims: lambda_event("POST", body, claims=claims),
        st.sampled_from(
            [
                json.dumps({"query": "{ gifts { id } }"}),
                json.dumps({"query": "{ me { id isAdult } }"}),
            ]
        ),
        st.sampled_from(CALLERS),
    ),
    st.sampled_from(EVENT_PATHS),
    json_values | st.sampled_from(["GET", "POST", "OPTIONS", "true", "!!", "[admin]"]),
    st.booleans(),
)


async def test_fuzz_api_gateway_events(services: Any) -> None:
    from handlers.lambda_api import make_async_handler

    handle = make_async_handler(services)
    budget, loop = Budget(), asyncio.get_running_loop()

    @settings(FUZZ, max_examples=max(EXAMPLES // 4, 100))
    @given(events)
    def one(event: dict[str, Any]) -> None:
        if budget.spent():
            return
        response = asyncio.run_coroutine_threadsafe(handle(event), loop).result()
        budget.sent += 1
        assert isinstance(response.get("body", ""), str)
        check(response["statusCode"], response.get("body", ""), event)

    await asyncio.to_thread(one)
    print(f"\nfuzz[events]: {budget.sent} events in {time.monotonic() - budget.started:.1f} s")


@pytest.fixture
def fuzz_app_settings(services: Any) -> None:
    """No per-client rate limit: the fuzzer is one client sending as fast as it can."""
    import dataclasses

    services.settings = dataclasses.replace(services.settings, rate_limit_per_second=0)
