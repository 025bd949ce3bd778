"""The stores' configuration and shared types: settings read and validated once, each store
built from them (keys from the environment or a Secrets Manager secret) and verifying against
the local fakes, money in minor units, and the GraphQL function's import path kept free of the
stores' libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from infra.app_store import AppStore
from infra.config import ConfigError, Settings
from infra.play_store import PlayStore
from infra.stores import (
    MALFORMED,
    PRODUCTION,
    SANDBOX,
    ReceiptInvalid,
    account_token,
    app_store_from,
    from_millis,
    minor_units,
    play_store_from,
    play_transaction_id,
)
from tests.app_store_fake import APP_APPLE_ID, BUNDLE_ID, ISSUER_ID, KEY_ID, AppStoreFake
from tests.play_store_fake import PACKAGE, PUSH_ACCOUNT, PUSH_AUDIENCE, PlayStoreFake

ROOT = Path(__file__).resolve().parent.parent


def test_no_store_is_on_by_default() -> None:
    settings = Settings.from_env({})
    assert app_store_from(settings) is None and play_store_from(settings) is None
    assert settings.store_test_accounts == frozenset()


def test_store_settings_are_read_and_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    root = tmp_path / "AppleRootCA-G3.cer"
    root.write_bytes(AppStoreFake().chain.root_der)
    settings = Settings.from_env(
        {
            "LIVECOINS_APP_STORE_BUNDLE_ID": BUNDLE_ID,
            "LIVECOINS_APP_STORE_APP_APPLE_ID": str(APP_APPLE_ID),
            "LIVECOINS_APP_STORE_ROOT_CERTIFICATES": f"{root}, {root}",
            "LIVECOINS_APP_STORE_ONLINE_CHECKS": "on",
            "LIVECOINS_APP_STORE_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----s3kr1t-p8",
            "LIVECOINS_PLAY_PACKAGE_NAME": PACKAGE,
            "LIVECOINS_PLAY_SERVICE_ACCOUNT": '{"private_key": "s3kr1t-json"}',
            "LIVECOINS_PLAY_PUSH_AUDIENCE": PUSH_AUDIENCE,
            "LIVECOINS_PLAY_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
            "LIVECOINS_STORE_TEST_ACCOUNTS": "app-review, tester-1,,",
            "LIVECOINS_STORE_TIMEOUT_SECONDS": "3",
        }
    )
    assert settings.app_store_app_apple_id == APP_APPLE_ID
    assert settings.app_store_root_certificates == (str(root), str(root))
    assert settings.app_store_online_checks is True
    assert settings.app_store_environment == "production"
    assert settings.store_test_accounts == {"app-review", "tester-1"}
    assert settings.store_timeout_seconds == 3.0
    assert "s3kr1t" not in repr(settings)


def test_every_store_setting_problem_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "LIVECOINS_APP_STORE_BUNDLE_ID": BUNDLE_ID,
                "LIVECOINS_APP_STORE_ENVIRONMENT": "xcode",
                "LIVECOINS_APP_STORE_APP_APPLE_ID": "abc",
                "LIVECOINS_APP_STORE_ROOT_CERTIFICATES": str(tmp_path / "missing.cer"),
                "LIVECOINS_PLAY_PACKAGE_NAME": PACKAGE,
                "LIVECOINS_PLAY_PUSH_AUDIENCE": PUSH_AUDIENCE,
                "LIVECOINS_PLAY_API_BASE": "not a url",
            }
        )
    text = str(caught.value)
    for name in (
        "LIVECOINS_APP_STORE_ENVIRONMENT='xcode'",
        "LIVECOINS_APP_STORE_APP_APPLE_ID='abc'",
        "LIVECOINS_APP_STORE_ROOT_CERTIFICATES=",
        "LIVECOINS_APP_STORE_ROOT_CERTIFICATES: required",
        "LIVECOINS_APP_STORE_APP_APPLE_ID: required in production",
        "LIVECOINS_PLAY_SERVICE_ACCOUNT or LIVECOINS_PLAY_SECRET_ARN",
        "LIVECOINS_PLAY_PUSH_AUDIENCE and LIVECOINS_PLAY_PUSH_SERVICE_ACCOUNT",
        "LIVECOINS_PLAY_API_BASE='not a url'",
    ):
        assert name in text, name


def test_a_sandbox_app_store_needs_no_apple_id(tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(_pem(AppStoreFake().chain.root_der))
    settings = Settings.from_env(
        {
            "LIVECOINS_APP_STORE_BUNDLE_ID": BUNDLE_ID,
            "LIVECOINS_APP_STORE_ENVIRONMENT": "sandbox",
            "LIVECOINS_APP_STORE_ROOT_CERTIFICATES": str(root),
        }
    )
    store = app_store_from(settings)
    assert store is not None and store.environments == (SANDBOX,)


async def test_the_app_store_built_from_settings_verifies_and_reads(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    # GIVEN Apple's root as a DER file and the in-app purchase key in the environment
    apple = AppStoreFake()
    server = await aiohttp_server(apple.app("Production"))
    root = tmp_path / "AppleRootCA-G3.cer"
    root.write_bytes(apple.chain.root_der)
    settings = Settings.from_env(
        {
            "LIVECOINS_APP_STORE_BUNDLE_ID": BUNDLE_ID,
            "LIVECOINS_APP_STORE_APP_APPLE_ID": str(APP_APPLE_ID),
            "LIVECOINS_APP_STORE_ROOT_CERTIFICATES": str(root),
            "LIVECOINS_APP_STORE_KEY_ID": KEY_ID,
            "LIVECOINS_APP_STORE_ISSUER_ID": ISSUER_ID,
            "LIVECOINS_APP_STORE_PRIVATE_KEY": apple.private_key_pem.decode(),
            "LIVECOINS_APP_STORE_API_BASE": str(server.make_url("")),
        }
    )
    store = app_store_from(settings)
    assert store is not None and store.environments == (PRODUCTION, SANDBOX)
    # WHEN a purchase is verified and its refund read THEN both work end to end
    tid = apple.buy("coins_100")
    assert (await store.verify_transaction(apple.signed_transaction(tid))).transaction_id == tid
    apple.refund(tid)
    assert [t.transaction_id for t in (await store.refund_history(tid)).transactions] == [tid]


def test_the_app_store_key_comes_from_a_secrets_manager_secret(tmp_path: Path) -> None:
    import boto3
    from moto import mock_aws

    apple = AppStoreFake()
    root = tmp_path / "root.cer"
    root.write_bytes(apple.chain.root_der)
    with mock_aws():
        secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="livecoins/app-store",
            SecretString=json.dumps(
                {
                    "keyId": KEY_ID,
                    "issuerId": ISSUER_ID,
                    "privateKey": apple.private_key_pem.decode(),
                }
            ),
        )
        settings = Settings(
            app_store_bundle_id=BUNDLE_ID,
            app_store_app_apple_id=APP_APPLE_ID,
            app_store_root_certificates=(str(root),),
            app_store_secret_arn=secret["ARN"],
        )
        store = app_store_from(settings)
    assert store is not None and store._key is not None
    assert (store._key.key_id, store._key.issuer_id) == (KEY_ID, ISSUER_ID)
    assert "PRIVATE" not in repr(store._key)


async def test_google_play_built_from_settings_reads_and_verifies(aiohttp_server: Any) -> None:
    google = PlayStoreFake()
    server = await aiohttp_server(google.app())
    base = str(server.make_url("")).rstrip("/")
    settings = Settings.from_env(
        {
            "LIVECOINS_PLAY_PACKAGE_NAME": PACKAGE,
            "LIVECOINS_PLAY_SERVICE_ACCOUNT": json.dumps(
                google.service_account_info(f"{base}/token")
            ),
            "LIVECOINS_PLAY_API_BASE": base,
            "LIVECOINS_PLAY_CERTS_URL": f"{base}/oauth2/v1/certs",
            "LIVECOINS_PLAY_PUSH_AUDIENCE": PUSH_AUDIENCE,
            "LIVECOINS_PLAY_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
        }
    )
    play = play_store_from(settings)
    assert play is not None
    token = google.buy("coins_100")
    assert (await play.purchase("coins_100", token)).transaction_id == play_transaction_id(token)
    assert (await play.verify_push(*google.push(google.notification("test")))).kind == "TEST"


def test_the_play_key_comes_from_a_secrets_manager_secret() -> None:
    import boto3
    from moto import mock_aws

    info = PlayStoreFake().service_account_info("https://oauth2.googleapis.com/token")
    with mock_aws():
        secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="livecoins/play", SecretString=json.dumps(info)
        )
        settings = Settings(play_package_name=PACKAGE, play_secret_arn=secret["ARN"])
        play = play_store_from(settings)
    assert play is not None
    assert play._session.credentials.service_account_email == info["client_email"]


@pytest.mark.parametrize(
    ("milliunits", "currency", "minor"),
    [
        (990, "USD", 99),
        (12990, "usd", 1299),
        (1995, "EUR", 200),  # half a cent rounds up (no Apple price point has one)
        (1994, "EUR", 199),
        (160000, "JPY", 160),
        (1500, "KRW", 2),
        (1250, "KWD", 1250),
        (1250, "CLF", 12500),
    ],
)
def test_milliunits_become_minor_units(milliunits: int, currency: str, minor: int) -> None:
    assert minor_units(milliunits, currency) == minor


def test_a_google_transaction_id_is_a_fixed_size_digest_of_the_token() -> None:
    token = "abcdefg.AO-J1Oz" + "x" * 140
    assert play_transaction_id(token) == play_transaction_id(token)
    assert len(play_transaction_id(token)) == 64 and token not in play_transaction_id(token)
    assert play_transaction_id(token) != play_transaction_id(token + "y")


async def test_an_account_token_set_by_the_app_comes_back_on_both_stores(
    aiohttp_server: Any,
) -> None:
    # GIVEN the token the app derives from the signed-in account's id
    token = account_token("alice")
    assert token == account_token("alice") != account_token("bob") and len(token) == 36
    assert "alice" not in token
    # WHEN each store's purchase carries it THEN the verified transaction says it back
    apple = AppStoreFake()
    store = AppStore(
        root_certificates=[apple.chain.root_der], bundle_id=BUNDLE_ID, app_apple_id=APP_APPLE_ID
    )
    tid = apple.buy("coins_100", account_token=token.upper())
    assert (await store.verify_transaction(apple.signed_transaction(tid))).account_token == token
    google = PlayStoreFake()
    base = str((await aiohttp_server(google.app())).make_url("")).rstrip("/")
    play = PlayStore(
        package_name=PACKAGE,
        service_account_info=google.service_account_info(f"{base}/token"),
        api_base=base,
    )
    purchase = google.buy("coins_100", account_id=token)
    assert (await play.purchase("coins_100", purchase)).account_token == token


def test_store_times_are_utc_and_junk_is_malformed() -> None:
    assert from_millis("1700000000123") == from_millis(1700000000123)
    assert from_millis(None) is None and from_millis("") is None
    moment = from_millis(0)
    assert moment is not None and moment.utcoffset() is not None
    with pytest.raises(ReceiptInvalid) as caught:
        from_millis("soon")
    assert caught.value.reason == MALFORMED


def test_the_lambda_import_path_stays_free_of_the_stores_libraries() -> None:
    # GIVEN a fresh interpreter WHEN the shared store types are imported
    code = (
        "import sys, infra.stores, infra.config; "
        "print([m for m in ('appstoreserverlibrary', 'google.auth', 'requests', 'OpenSSL', "
        "'jwt', 'cattrs', 'infra.app_store', 'infra.play_store') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    # THEN none of the stores' libraries came with them
    assert out.strip() == "[]"


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
