"""Table definitions read from template.yaml, the single source of truth.

The tests (moto) and the local server (the embedded engine, or any DynamoDB endpoint) create
their tables from the same KeySchema, AttributeDefinitions, GSIs, TTL and streams that
`sam deploy` creates in AWS.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from infra.config import TABLES, Settings

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Safe YAML loader that reads CloudFormation tags (!Ref, !GetAtt, ...) as plain data."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {suffix: value}


_CfnLoader.add_multi_constructor("!", _tag)


@lru_cache(maxsize=1)
def template_tables() -> dict[str, dict[str, Any]]:
    """Logical name ("accounts") -> the table's Properties in template.yaml."""
    document = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    tables = {
        logical.removesuffix("Table").lower(): resource["Properties"]
        for logical, resource in document["Resources"].items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }
    missing = set(TABLES) - set(tables)
    if missing:
        raise RuntimeError(f"template.yaml lacks tables {sorted(missing)}")
    return tables


def create_table_requests(settings: Settings) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(CreateTable kwargs, UpdateTimeToLive spec or None) for every table."""
    requests = []
    for name, props in template_tables().items():
        kwargs: dict[str, Any] = {
            "TableName": settings.table(name),
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if props.get("StreamSpecification"):
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        ttl = props.get("TimeToLiveSpecification")
        requests.append((kwargs, ttl))
    return requests


def _shape(table: dict[str, Any]) -> tuple[Any, ...]:
    """What must match between a table and its definition: keys and index keys."""
    indexes = sorted(
        (i["IndexName"], tuple((k["AttributeName"], k["KeyType"]) for k in i["KeySchema"]))
        for i in table.get("GlobalSecondaryIndexes") or []
    )
    keys = tuple((k["AttributeName"], k["KeyType"]) for k in table["KeySchema"])
    return keys, tuple(indexes)


def ensure_tables(client: Any, settings: Settings) -> list[str]:
    """Create the missing tables (and their TTL); return the names created. An existing table
    whose keys or indexes differ from template.yaml is an error, not something to work on."""
    existing: set[str] = set()
    for page in client.get_paginator("list_tables").paginate():
        existing.update(page["TableNames"])
    created = []
    for kwargs, ttl in create_table_requests(settings):
        if kwargs["TableName"] in existing:
            found = client.describe_table(TableName=kwargs["TableName"])["Table"]
            if _shape(found) != _shape(kwargs):
                raise RuntimeError(
                    f"table {kwargs['TableName']} has other keys or indexes than template.yaml "
                    "defines: migrate it, or for local data delete the data directory"
                )
            continue
        client.create_table(**kwargs)
        client.get_waiter("table_exists").wait(
            TableName=kwargs["TableName"], WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
        if ttl:
            client.update_time_to_live(TableName=kwargs["TableName"], TimeToLiveSpecification=ttl)
        created.append(kwargs["TableName"])
    return created
