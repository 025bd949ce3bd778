"""Issue 9, what one document may cost: fields and cost refused before validation and
execution, list sizes, introspection, and bounded reads."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from graphql import GraphQLList, get_introspection_query, get_nullable_type, parse

from infra.services import Services
from schema import schema
from schema.limits import LIST_SIZES, MAX_FIELDS, READ_COST, budget, measure
from tests.clients import AiohttpClient, Client, LambdaClient

# The issue's examples: 400 catalog fields (1.2 s of validation), and 20 aliases of 100 live
# streams with 100 gifts and 100 gifters each (4.4 s and 364 KB anonymously).
CATALOG_400 = "{" + " coinPackages { id }" * 400 + "}"  # 1,602 tokens
FIELDS_220 = "{" + " coinPackages { id }" * 110 + "}"  # under the token limit
ALIASES_20 = (
    "{"
    + " ".join(
        f"s{i}: liveStreams(first: 100) {{ edges {{ node {{ gifts(first: 100) "
        f"{{ edges {{ node {{ id }} }} }} topGifters(first: 100) {{ rank }} }} }} }}"
        for i in range(20)
    )
    + "}"
)
ORDINARY = [  # README's examples and what a client page asks: all well under the limits
    '{ liveStream(id: "str_x") { coinsReceived topGifters(first: 10) { rank coins user '
    "{ displayName } } gifts(first: 20) { edges { node { gift { name } quantity sender "
    "{ displayName } } } } } }",
    "{ me { displayName isAdult wallet { coins diamonds } transactions(first: 10) { edges "
    "{ node { kind coins referenceId createdAt } } pageInfo { hasNextPage endCursor } } } "
    "coinPackages { id coins price { formatted } } gifts { id name coins } }",
    "{ liveStreams { edges { node { id title creator { displayName } coinsReceived "
    "topGifters(first: 3) { rank user { displayName } } } } pageInfo { hasNextPage } } }",
]


@pytest.mark.parametrize(
    ("document", "code"),
    [(CATALOG_400, None), (FIELDS_220, "QUERY_TOO_COMPLEX"), (ALIASES_20, "QUERY_TOO_COMPLEX")],
    ids=["tokens", "fields", "cost"],
)
async def test_expensive_documents_are_refused_before_validation_and_execution(
    api: Client, calls: Any, monkeypatch: pytest.MonkeyPatch, document: str, code: str | None
) -> None:
    import schema.limits as limits

    validated: list[Any] = []
    monkeypatch.setattr(limits, "validate", lambda *a: validated.append(a) or [])
    calls.reset()
    result = await api.gql(document)
    assert result["data"] is None
    (error,) = result["errors"]
    assert error.get("extensions", {}).get("code") == code, error
    assert "limit" in error["message"].lower() or "token" in error["message"].lower()
    assert not validated and not calls.counts()


@pytest.mark.parametrize("document", ORDINARY)
def test_ordinary_documents_are_well_under_the_limits(document: str) -> None:
    fields, cost = measure(schema._schema, budget(schema._schema).sizes, parse(document))
    assert fields <= 40 and cost <= 1_000, (fields, cost)


def test_cost_follows_first_from_literals_variables_and_defaults() -> None:
    sizes = budget(schema._schema).sizes
    doc = parse(
        "query Q($n: Int = 7) { liveStreams(first: $n) { edges { node { topGifters { rank } } } } }"
    )
    # liveStreams (a read) + n x edges (1 + node (1 + topGifters: a read + 10 x rank))
    per_stream = 1 + 1 + (READ_COST + 10 * 1)
    assert measure(schema._schema, sizes, doc, None, {"n": 3})[1] == READ_COST + 3 * per_stream
    assert measure(schema._schema, sizes, doc, None, {})[1] == READ_COST + 7 * per_stream
    assert (
        measure(schema._schema, sizes, doc, None, {"n": 10**9})[1] == READ_COST + 100 * per_stream
    )


def test_every_list_field_has_a_size() -> None:
    """A list without `first` needs an entry in LIST_SIZES, so its cost is thought about."""
    missing = [
        f"{name}.{field}"
        for name, kind in schema._schema.type_map.items()
        if not name.startswith("__")
        for field, definition in (getattr(kind, "fields", None) or {}).items()
        if hasattr(definition, "args")
        and isinstance(get_nullable_type(definition.type), GraphQLList)
        and "first" not in definition.args
        and (name, field) not in LIST_SIZES
    ]
    assert missing == []


def test_graphiql_introspection_fits_the_introspection_limits() -> None:
    full = parse(get_introspection_query(descriptions=True, input_value_deprecation=True))
    assert budget(schema._schema).refusal(full, None, {}, 3_000) is None
    mixed = parse("{ gifts { id } __schema { types { fields { type { fields { name } } } } } }")
    assert budget(schema._schema).refusal(mixed, None, {}, 3_000) is not None


async def test_introspection_is_off_on_the_lambda_and_on_locally(
    services: Services, aiohttp_client: Any
) -> None:
    from handlers.server import make_app

    doc = json.dumps({"query": "{ __schema { queryType { name } } }"})
    local = AiohttpClient(await aiohttp_client(make_app(services)), "")
    assert (await local.request("POST", doc)).json["data"]["__schema"]["queryType"]["name"]
    refused = (await LambdaClient(services).request("POST", doc)).json
    assert "introspection" in refused["errors"][0]["message"].lower()
    typename = json.dumps({"query": "{ __typename }"})
    assert (await LambdaClient(services).request("POST", typename)).json["data"]
    services.settings = dataclasses.replace(services.settings, introspection=True)
    assert (await LambdaClient(services).request("POST", doc)).json["data"]["__schema"]


def test_field_cap_is_the_documented_one() -> None:
    fields, _ = measure(schema._schema, {}, parse(FIELDS_220))
    assert fields == 220 > MAX_FIELDS == 200


async def test_top_gifters_reads_a_bounded_tie(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    import infra.rankings as rankings

    monkeypatch.setattr(rankings, "MAX_TIED", 10)
    table = services.settings.table("rankings")
    for n in range(40):  # 40 senders tied at the cut: same coins, same 6-byte id prefix
        sender = f"sender{n:02d}"
        services.dynamo.client.put_item(
            TableName=table,
            Item={
                "id": {"S": f"str_tie#{sender}"},
                "coins": {"N": "5"},
                "rankSort": {"N": str(5 * 2**rankings.PREFIX_BITS + rankings.rank_base(sender))},
                "rankKey": {"S": "str_tie"},
            },
        )
    read: list[int] = []
    real = services.dynamo.query

    async def counting(*args: Any, **kwargs: Any) -> Any:
        items, last = await real(*args, **kwargs)
        read.append(len(items))
        return items, last

    monkeypatch.setattr(services.dynamo, "query", counting)
    top = await services.rankings.top("str_tie", 1)
    assert len(top) == 1 and sum(read) <= 2 + 10
