"""The project's shape: the exported schema, the contract, the template, imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import build_schema, find_breaking_changes
from strawberry.printer import print_schema

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT.parent / "shared" / "contract" / "schema.graphql"

# Contract parts not built yet, by the issue that builds them; the test fails when one is
# built and still listed, so the list only ever shrinks. Empty: every promise is kept.
NOT_YET_BUILT: set[str] = set()


def test_exported_sdl_is_current() -> None:
    from schema import schema

    committed = (ROOT / "schema" / "schema.graphql").read_text()
    assert committed == print_schema(schema) + "\n", "run `make schema`"


@pytest.mark.skipif(not CONTRACT.exists(), reason="no shared contract beside this checkout")
def test_schema_keeps_the_contract() -> None:
    contract = build_schema(CONTRACT.read_text())
    ours = build_schema((ROOT / "schema" / "schema.graphql").read_text())
    breaking = {change.description for change in find_breaking_changes(contract, ours)}
    assert breaking - NOT_YET_BUILT == set()
    # Entries that are built must leave the list, so it only ever shrinks.
    assert NOT_YET_BUILT - breaking == set()


def test_import_schema_is_this_repository() -> None:
    import schema

    assert Path(schema.__file__).resolve().parent == ROOT / "schema"


# Modules the GraphQL function's first request does not need, each a measurable share of its
# cold start (`make bench` times the import against `import strawberry, boto3`).
NOT_ON_THE_LAMBDA_IMPORT_PATH = (
    "aiohttp",  # the local server
    "jwt",  # dev tokens; the HTTP API's authorizer verifies Cognito's
    "yaml",  # template.yaml, read by the local server and tests
    "moto",
    "infra.engine",  # the local engine
    "boto3",  # botocore alone makes the client; boto3 adds s3transfer and multiprocessing
    "s3transfer",
    "multiprocessing",
    "aws_lambda_powertools.utilities.data_classes",  # the event is read as a dict
    "strawberry.federation.schema_directives",  # LiveCoinsSchema skips the federation check
)


def test_lambda_import_path_stays_lean() -> None:
    # GIVEN a fresh interpreter WHEN the Lambda handler module is imported
    code = (
        "import sys, handlers.lambda_api; "
        f"print([m for m in {NOT_ON_THE_LAMBDA_IMPORT_PATH!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    # THEN none of the modules its first request does not need come with it
    assert out.strip() == "[]"


def test_template_translates_and_lints(tmp_path: Path) -> None:
    """The SAM template turns into CloudFormation offline, and cfn-lint passes on both."""
    import yaml
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
    from samtranslator.translator.transform import transform

    from infra.tables import _CfnLoader

    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/code.zip"

    class NoIam:
        def load(self) -> dict[str, str]:
            return {}

    # Tags were read as {"Ref": ...} mappings, which is their JSON form.
    translated = transform(_json_form(template), {}, ManagedPolicyLoader(NoIam()))  # type: ignore[arg-type]
    resources = translated["Resources"]
    types = {r["Type"] for r in resources.values()}
    assert {"AWS::Lambda::Function", "AWS::ApiGatewayV2::Api", "AWS::DynamoDB::Table"} <= types
    policy = json.dumps([r for r in resources.values() if r["Type"] == "AWS::IAM::Role"])
    assert "dynamodb:*" not in policy and "dynamodb:Scan" not in policy
    out = tmp_path / "translated.json"
    out.write_text(json.dumps(translated))
    for path in (ROOT / "template.yaml", out):
        lint = subprocess.run(
            # informational checks too (I...): e.g. retention policies on stateful resources
            [
                str(Path(sys.executable).parent / "cfn-lint"),
                "--include-checks",
                "I",
                "--",
                str(path),
            ],
            capture_output=True,
            text=True,
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr


def _json_form(node: object) -> object:
    if isinstance(node, dict):
        if len(node) == 1:
            ((key, value),) = node.items()
            if key in {"Ref", "Sub", "GetAtt", "If", "Not", "Equals", "Join"}:
                name = "Ref" if key == "Ref" else f"Fn::{key}"
                if key == "GetAtt" and isinstance(value, str):
                    value = value.split(".", 1)
                return {name: _json_form(value)}
        return {k: _json_form(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_json_form(v) for v in node]
    return node


async def test_repeated_documents_skip_validation(
    services: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The validation cache must hit on a repeated document (not a timing test)."""
    import schema.limits as limits
    from resolvers.context import Context
    from schema import schema

    validated: list[object] = []
    real = limits.validate

    def counting(*args: object) -> object:
        validated.append(args[1])
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(limits, "validate", counting)
    document = "{ gifts { id name } coinPackages { id } __typename }"
    for _ in range(4):
        result = await schema.execute(document, context_value=Context(services, None))  # type: ignore[arg-type]
        assert not result.errors
    assert len(validated) == 1


def test_tables_that_drifted_from_the_template_are_refused(services: object) -> None:
    from infra.services import Services
    from infra.tables import ensure_tables

    assert isinstance(services, Services)
    client, settings = services.dynamo.client, services.settings
    assert ensure_tables(client, settings) == []  # all there and matching: nothing to do
    name = settings.table("rankings")
    client.delete_table(TableName=name)
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "streamId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "streamId", "AttributeType": "S"}],
    )
    with pytest.raises(RuntimeError, match="rankings"):
        ensure_tables(client, settings)


def test_lambda_requirements_match_the_runtime_dependencies() -> None:
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    deployed = [line for line in lines if line and not line.startswith("#")]
    assert deployed == declared
