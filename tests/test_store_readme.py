"""README "Real money: the stores", run as written: its configuration block with the files it
names (Apple's root certificate, the in-app purchase key, the service account: the local
fakes' own, under a temporary $HOME), then each `curl` block against the local server's app
(handlers/server.py, on moto) built from that configuration, with the local fakes of Apple and
Google (tests/app_store_fake.py, tests/play_store_fake.py) in place of the stores' hosts, and
each answer as the README shows it.

The section has no ```graphql block, so tests/test_readme.py (whose shared server sells in no
store) does not run it; this test does."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from moto import mock_aws

from handlers.server import make_app
from infra.config import Settings
from infra.payments import SandboxPaymentProvider
from infra.services import Services
from infra.stores import account_token
from infra.tables import ensure_tables
from resolvers.catalog import seed
from tests.app_store_fake import AppStoreFake
from tests.play_store_fake import PlayStoreFake
from tests.test_readme import BASH, README, README_ADDRESS, ROOT, Block, sections

TITLE = "Real money: the stores"


def blocks() -> list[Block]:
    (section,) = [s for s in sections(README.read_text()) if s.title == TITLE]
    assert not [b for b in section.blocks if b.language == "graphql"]  # see the docstring
    return section.blocks


def exported(block: Block) -> dict[str, str]:
    """The literal values the configuration block exports (NAME=value, no $)."""
    found: dict[str, str] = {}
    for line in block.text.splitlines():
        match = re.match(r"export (\w+)=([^\s$\"]+)$", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def answers(text: str) -> list[Any]:
    """The JSON documents a block printed (or shows), back to back."""
    decoder, found, at = json.JSONDecoder(), [], 0
    text = text.strip()
    while at < len(text):
        value, at = decoder.raw_decode(text, at)
        found.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return found


def shown(value: Any) -> Any:
    """An answer with the ids the service mints made alike (the README's are examples)."""
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    if isinstance(value, str) and re.fullmatch(r"[a-z]+_[0-9A-Z]{26}", value):
        return value.split("_")[0] + "_..."
    return value


async def bash(script: str, env: dict[str, str], cwd: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        BASH,
        "-euo",
        "pipefail",
        "-c",
        script,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_the_stores_section_runs_as_written(tmp_path: Path, aiohttp_server: Any) -> None:
    config, *steps = [b for b in blocks() if b.language == "sh"]
    values = exported(config)
    # GIVEN the stores' fakes as the README's configuration names them
    apple = AppStoreFake(
        bundle_id=values["LIVECOINS_APP_STORE_BUNDLE_ID"],
        key_id=values["LIVECOINS_APP_STORE_KEY_ID"],
        issuer_id=values["LIVECOINS_APP_STORE_ISSUER_ID"],
        delay=1.0,
    )
    google = PlayStoreFake(package_name=values["LIVECOINS_PLAY_PACKAGE_NAME"], delay=1.0)
    apple_server = await aiohttp_server(apple.app("Sandbox"))
    google_server = await aiohttp_server(google.app())
    google_base = str(google_server.make_url("")).rstrip("/")
    home = tmp_path / "home"
    (home / "stores").mkdir(parents=True)
    (home / "stores" / "AppleRootCA-G3.cer").write_bytes(apple.chain.root_der)
    (home / "stores" / "SubscriptionKey_ABC123DEFG.p8").write_bytes(apple.private_key_pem)
    (home / "stores" / "play-service-account.json").write_text(
        json.dumps(google.service_account_info(f"{google_base}/token"))
    )
    # WHEN the configuration block runs (all but `make serve`: this test serves)
    script = config.text.replace("make serve", "env -0")
    assert script != config.text
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOINS_")}
    dumped = await bash(script, {**base, "HOME": str(home)}, tmp_path)
    environment = dict(line.split("=", 1) for line in dumped.split("\0") if "=" in line)
    store_settings = {k: v for k, v in environment.items() if k.startswith("LIVECOINS_")}
    assert "LIVECOINS_APP_STORE_PRIVATE_KEY" in store_settings
    # only the stores' hosts differ from the README's
    store_settings |= {
        "LIVECOINS_APP_STORE_SANDBOX_API_BASE": str(apple_server.make_url("")),
        "LIVECOINS_PLAY_API_BASE": google_base,
        "LIVECOINS_PLAY_CERTS_URL": f"{google_base}/oauth2/v1/certs",
    }
    settings = Settings.from_env(store_settings)
    with mock_aws():
        services = Services.build(settings, payments=SandboxPaymentProvider())
        ensure_tables(services.dynamo.client, settings)
        await seed(services.catalog)
        server = await aiohttp_server(make_app(services))
        url = str(server.make_url("")).rstrip("/")
        # the purchases Alice's app made (the README's products, for Alice's account)
        apple_product = re.search(r'appStoreProductId: \\"([^\\]+)\\"', steps[0].text)
        play_product = re.search(r'playStoreProductId: \\"([^\\]+)\\"', steps[0].text)
        assert apple_product and play_product
        tid = apple.buy(
            apple_product.group(1), environment="Sandbox", account_token=account_token("alice")
        )
        token = google.buy(
            play_product.group(1), purchase_type=0, account_id=account_token("alice")
        )
        env = {
            **base,
            "PYTHONPATH": str(ROOT),
            "RECEIPT": apple.signed_transaction(tid),
            "TRANSACTION_ID": tid,
            "PURCHASE_TOKEN": token,
            "ORDER_ID": google.purchases[token]["resource"]["orderId"],
        }
        printed: list[list[Any]] = []
        for step in steps:
            if "SIGNED_PAYLOAD" in step.text:  # Apple refunds the App Store purchase
                env["SIGNED_PAYLOAD"] = apple.refund(tid)
            printed.append(answers(await bash(step.text.replace(README_ADDRESS, url), env, ROOT)))
        # THEN each step answers as the README says
        sold, bought, twice, refunded = printed
        assert sold[0]["data"]["upsertCoinPackage"]["storeProducts"] == [
            {"store": "APP_STORE", "productId": apple_product.group(1)},
            {"store": "PLAY_STORE", "productId": play_product.group(1)},
        ]
        json_blocks = [answers(b.text) for b in blocks() if b.language == "json"]
        assert [shown(a) for a in bought] == [shown(a) for a in json_blocks[0]]
        assert [a["data"]["redeemStorePurchase"]["__typename"] for a in twice] == [
            "CoinsPurchased",
            "CoinsPurchased",
        ]
        assert twice[0] == twice[1]
        assert refunded == json_blocks[1]
        # AND Alice keeps the Google purchase's coins; the refunded App Store ones are gone
        account = await services.accounts.get("alice", consistent=True)
        assert account is not None and account["coins"] == 350
        assert google.purchases[token]["resource"]["consumptionState"] == 1
