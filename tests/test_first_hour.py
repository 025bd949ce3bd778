"""What a new user meets in the first hour: configuration checked at start, the CLI's help,
the start-up's progress, the favicon, the app and its local-only dev tokens."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import jwt
import pytest
import yaml
from aiohttp.test_utils import make_mocked_request

from handlers.cli import parser
from infra.config import ConfigError, Settings
from infra.services import Services
from tests.clients import lambda_event

ROOT = Path(__file__).resolve().parent.parent


def test_the_defaults_are_valid() -> None:
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("PORT", "abc", "a whole number from 1 to 65535"),
        ("PORT", "70000", "a whole number from 1 to 65535"),
        ("LIVECOINS_GIFT_SHARDS", "abc", "a whole number from 1 to 1024"),
        ("LIVECOINS_RETRY_BUDGET_SECONDS", "-1", "a number of at least 0.1"),
        ("LIVECOINS_CATALOG_CACHE_SECONDS", "nan", "a number of at least 0"),
        ("LIVECOINS_INTROSPECTION", "maybe", "1 or 0"),
        ("LIVECOINS_PAYMENT_PROVIDER", "visa", "one of none, sandbox"),
        ("LIVECOINS_DYNAMODB_ENDPOINT", "localhost:8000", "a URL"),
        ("LIVECOINS_IDEMPOTENCY_TTL_SECONDS", "60", "a whole number of at least 86400"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(
    variable: str, value: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({variable: value})
    assert f"{variable}={value!r}: must be {allowed}" in str(raised.value)


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {"PORT": "x", "LIVECOINS_GIFT_SHARDS": "0", "LIVECOINS_INDEX_SHARDS": "2"}
        )
    assert [p.split("=")[0] for p in raised.value.problems] == ["LIVECOINS_GIFT_SHARDS", "PORT"]


def test_good_values_are_read() -> None:
    settings = Settings.from_env(
        {"PORT": " 8080 ", "LIVECOINS_INTROSPECTION": "off", "LIVECOINS_GIFT_SHARDS": "1_0"}
    )
    assert (settings.port, settings.introspection, settings.gift_shards) == (8080, False, 10)


def test_serve_refuses_a_bad_configuration_with_a_message_not_a_traceback() -> None:
    env = {**os.environ, "PORT": "abc", "LIVECOINS_GIFT_SHARDS": "abc", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "PORT='abc': must be a whole number from 1 to 65535" in out.stderr
    assert "LIVECOINS_GIFT_SHARDS='abc'" in out.stderr
    assert out.stdout == ""  # nothing started


def test_every_cli_option_has_help() -> None:
    commands: dict[str, argparse.ArgumentParser] = {}

    def options(command: argparse.ArgumentParser, name: str) -> list[tuple[str, Any]]:
        found = [(name, a) for a in command._actions if not isinstance(a, argparse._HelpAction)]
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                # each command's line in `livecoins --help`
                found += [(name, choice) for choice in action._choices_actions]
                for sub_name, sub in action.choices.items():
                    commands[sub_name] = sub
                    found += options(sub, sub_name)
        return found

    every = options(parser(), "livecoins")
    assert set(commands) == {
        "serve",
        "seed",
        "cloud",
        "token",
        "export-schema",
        "audit",
        "store-catch-up",
    }
    assert all(sub.description for sub in commands.values())
    for name, action in every:
        assert action.help, f"livecoins {name} {action.option_strings or action.dest}: no help"


@pytest.mark.parametrize(
    "arguments",
    [
        ["token", "--sub", "a#b"],
        ["token", "--sub", "alice", "--birthdate", "1.1.1990"],
        ["token", "--sub", "alice", "--hours", "0"],
    ],
)
def test_token_refuses_what_the_server_would(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        parser().parse_args(arguments)
    assert raised.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_serve_shows_its_progress_and_no_misleading_lines(local_server: Any) -> None:
    printed = "".join(local_server.output)
    assert "starting the local DynamoDB engine" in printed
    assert re.search(r"engine up on http://127\.0\.0\.1:\d+ in [\d.]+ s", printed)
    assert re.search(r"ready in [\d.]+ s", printed)
    assert f"the app:    {local_server.url}/app/" in printed
    # botocore's INFO line about the engine's placeholder credentials reads as real AWS ones
    assert "credentials" not in printed.lower()


async def test_favicon_and_the_app_are_served(services: Services, aiohttp_client: Any) -> None:
    from handlers.server import make_app

    client = await aiohttp_client(make_app(services))
    favicon = await client.get("/favicon.ico")
    assert favicon.status == 200 and favicon.headers["Content-Type"] == "image/x-icon"
    assert (await favicon.read())[:4] == b"\x00\x00\x01\x00"  # an ICO file
    moved = await client.get("/app", allow_redirects=False)
    assert moved.status == 302 and moved.headers["Location"] == "/app/"
    page = await client.get("/app/")
    assert page.status == 200 and '<script type="module" src="js/main.js">' in await page.text()
    for asset in ("js/main.js", "js/pages/stream.js", "app.css", "vendor/graphql-ws.min.js"):
        assert (await client.get(f"/app/{asset}")).status == 200, asset
    config = await (await client.get("/app/config.json")).json()
    assert config == {"mode": "local", "graphqlUrl": "/graphql", "publicGraphqlUrl": "/graphql"}
    # without `livecoins serve`'s dev_tokens there is no token endpoint
    assert (await client.get("/dev/tokens")).status == 404


async def test_dev_tokens_are_minted_for_this_machine_only(
    services: Services, aiohttp_client: Any
) -> None:
    from handlers.dev_tokens import dev_token_picker
    from handlers.server import make_app

    client = await aiohttp_client(make_app(services, dev_tokens=True))
    config = await (await client.get("/app/config.json")).json()
    assert config["devTokensUrl"] == "/dev/tokens"
    users = (await (await client.get("/dev/tokens")).json())["users"]
    assert [u["sub"] for u in users] == ["vic", "wen", "cora", "root", "kid"]
    secret = services.settings.jwt_secret
    claims = {u["sub"]: jwt.decode(u["token"], secret, algorithms=["HS256"]) for u in users}
    assert claims["root"]["cognito:groups"] == ["admin"] and "cognito:groups" not in claims["vic"]
    assert claims["kid"]["birthdate"] > "2008"  # the under-18 demo user
    # a client on the network gets no tokens, even from a server on HOST=0.0.0.0
    transport = mock.Mock()
    transport.get_extra_info.return_value = ("192.168.1.20", 50000)
    request = make_mocked_request("GET", "/dev/tokens", transport=transport)
    assert (await dev_token_picker(secret)(request)).status == 403


def test_the_lambda_has_no_dev_token_route(services: Services) -> None:
    from handlers.lambda_api import make_handler

    # GIVEN the deployed routes WHEN a request for /dev/tokens reaches the function anyway
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_AnyTag)  # noqa: S506
    routes = [
        r["Properties"]["RouteKey"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    ]
    assert routes and not [r for r in routes if "dev" in r or "token" in r]
    event = lambda_event("GET")
    event.update(rawPath="/dev/tokens", routeKey="GET /dev/tokens")
    answer = make_handler(services)(event, None)
    # THEN it mints nothing
    assert answer["statusCode"] in (400, 404) and "eyJ" not in answer.get("body", "")
    # AND the bundle leaves the local-only module out (Makefile copy_code removes it)
    makefile = (ROOT / "Makefile").read_text()
    assert '"$(1)/handlers/engine_launcher.py" "$(1)/handlers/dev_tokens.py"' in makefile


class _AnyTag(yaml.SafeLoader):
    """template.yaml with its CloudFormation tags read as plain values."""


_AnyTag.add_multi_constructor("!", lambda loader, suffix, node: None)
