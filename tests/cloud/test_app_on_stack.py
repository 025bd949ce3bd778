"""The reference app against a deployed stack, as docs/app.md hosts it: a static copy with a
`config.json` made of the stack's outputs, signing in to the user pool with SRP (the vendored
amazon-cognito-identity-js, in Chromium) and buying coins through the JWT authorizer. The app
offers the sandbox's test cards, so it runs against the sandbox stack.

Chromium runs with --disable-web-security here only: the emulator answers every CORS
preflight itself, without the CORS headers that the template's CorsConfiguration gives on AWS
(docs/aws.md, "What it got wrong"). The Cognito calls pass its CORS check unaided.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local_cloud import ROOT
from tests.cloud.conftest import PASSWORD, Cloud
from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS, TIMEOUT_MS, chromium_or_skip

pytestmark = pytest.mark.cloud


@pytest.fixture
def hosted_app(sandbox: Cloud, tmp_path: Path) -> Iterator[str]:
    """The app folder copied as-is and served by a plain static server on 127.0.0.1."""
    app = tmp_path / "app"
    shutil.copytree(ROOT / "handlers" / "static" / "app", app)
    outputs = sandbox.stack.outputs
    config = {
        "mode": "cognito",
        "graphqlUrl": sandbox.stack.graphql_url,
        "publicGraphqlUrl": sandbox.stack.public_graphql_url,
        "giftFeedUrl": sandbox.stack.gift_feed_url,
        "userPoolId": outputs["UserPoolId"],
        "userPoolClientId": outputs["UserPoolClientId"],
        "cognitoEndpoint": sandbox.cloud.url,
    }
    (app / "config.json").write_text(json.dumps(config))
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": _silent})
    handler = functools.partial(quiet, directory=str(app))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _silent(*_: Any) -> None:
    pass


def test_the_app_signs_in_with_srp_and_buys_through_the_authorizer(
    sandbox: Cloud, hosted_app: str, tmp_path: Path
) -> None:
    chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    user = sandbox.sign_up("ada", "1991-02-03")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_FLAGS, "--disable-web-security"],
            headless=True,
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(3 * TIMEOUT_MS)  # a cold function answers in seconds
            page.goto(f"{hosted_app}#/signin")
            page.get_by_label("Email").fill(user.email)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Signed in as Ada")).to_be_visible()
            page.get_by_role("link", name="Wallet", exact=True).click()
            page.get_by_role("button", name="Buy 70 coins for $0.99").click()
            expect(page.get_by_text("Bought 70 coins for $0.99")).to_be_visible()
            expect(page.get_by_test_id("coins")).to_have_text("70")
        finally:
            browser.close()
    assert sandbox.data("ada", "{ me { wallet { coins } } }")["me"]["wallet"]["coins"] == 70
