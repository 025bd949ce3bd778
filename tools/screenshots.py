"""`make screenshots`: the reference app's pages and states at desktop and phone widths, into
docs/screenshots/, from a fresh `livecoins serve` with a little demo data (streams with gifts
and combos, an ended stream, a paid and a pending withdrawal), and a second one with a 7-day
earnings hold for the creator's diamonds on hold. Uses Debian's Chromium (/usr/bin/chromium)
through Playwright, like the browser test."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handlers.dev_tokens import mint_token  # noqa: E402
from infra.config import LOCAL_JWT_SECRET  # noqa: E402
from tests import local_server  # noqa: E402
from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
HOLD_SECONDS = 7 * 24 * 3600


class Demo:
    """The local server's API as the demo users (and any other account) use it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys = 0

    def graphql(self, sub: str, query: str, variables: dict[str, Any] | None = None) -> Any:
        name = {"vic": "Vic", "wen": "Wen", "cora": "Cora", "root": "Root"}.get(sub, sub.title())
        token = mint_token(LOCAL_JWT_SECRET, sub, "1990-01-01", name, admin=sub == "root")
        request = urllib.request.Request(  # noqa: S310 - the local server just started
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer = json.loads(response.read())
        assert not answer.get("errors"), answer
        return answer["data"]

    def key(self) -> str:
        self.keys += 1
        return f"shot-{self.keys}"

    def live(self, sub: str, title: str) -> str:
        data = self.graphql(
            sub,
            "mutation S($t: String!) { startLiveStream(input: {title: $t}) { "
            "... on LiveStreamStarted { stream { id } } } }",
            {"t": title},
        )
        stream_id: str = data["startLiveStream"]["stream"]["id"]
        return stream_id

    def end(self, sub: str, stream: str) -> None:
        self.graphql(
            sub,
            "mutation E($s: ID!) { endLiveStream(input: {streamId: $s}) { __typename } }",
            {"s": stream},
        )

    def buy(self, sub: str, package: str) -> None:
        self.graphql(
            sub,
            "mutation B($p: ID!, $k: String!) { purchaseCoins(input: {packageId: $p, "
            'paymentToken: "tok_visa", idempotencyKey: $k}) { __typename } }',
            {"p": package, "k": self.key()},
        )

    def gift(self, sub: str, stream: str, gift: str, quantity: int = 1) -> None:
        self.graphql(
            sub,
            "mutation G($i: SendGiftInput!) { sendGift(input: $i) { __typename } }",
            {
                "i": {
                    "giftId": gift,
                    "streamId": stream,
                    "quantity": quantity,
                    "idempotencyKey": self.key(),
                }
            },
        )

    def withdraw(self, sub: str, diamonds: int) -> str:
        back = f"{self.url}/app/#/creator"  # the local sandbox onboards at once
        self.graphql(
            sub,
            "mutation P($i: StartPayoutOnboardingInput!) { startPayoutOnboarding(input: $i) "
            "{ __typename } }",
            {"i": {"returnUrl": back, "refreshUrl": back}},
        )
        data = self.graphql(
            sub,
            "mutation W($d: Int!, $k: String!) { requestWithdrawal(input: {diamonds: $d, "
            "idempotencyKey: $k}) { ... on WithdrawalRequested { withdrawal { id } } } }",
            {"d": diamonds, "k": self.key()},
        )
        withdrawal_id: str = data["requestWithdrawal"]["withdrawal"]["id"]
        return withdrawal_id


def demo_data(url: str) -> dict[str, str]:
    """Cora live with gifts (ten single Roses from Vic make one combo line), Wen live, Mia's
    stream ended, one of Cora's withdrawals paid and one waiting for review."""
    demo = Demo(url)
    stream = demo.live("cora", "Friday night live")
    other = demo.live("wen", "Cooking with Wen")
    ended = demo.live("mia", "Mia's morning show")
    demo.buy("vic", "coins-17500")
    demo.buy("wen", "coins-700")
    demo.gift("vic", stream, "galaxy", 5)
    demo.gift("wen", stream, "panda", 3)
    demo.gift("wen", stream, "love-bang", 4)
    for _ in range(10):
        demo.gift("vic", stream, "rose")
    demo.gift("vic", other, "concert")
    demo.gift("wen", ended, "rainbow-puke")
    demo.gift("vic", ended, "galaxy")
    demo.end("mia", ended)
    paid = demo.withdraw("cora", 2000)
    demo.graphql(
        "root",
        "mutation P($w: ID!) { settleWithdrawal(input: {withdrawalId: $w, outcome: PAID}) "
        "{ __typename } }",
        {"w": paid},
    )
    demo.withdraw("cora", 2500)
    return {"stream": stream, "ended": ended}


def hold_data(url: str) -> dict[str, str]:
    """With the earnings hold on: Cora live, her gifts' diamonds on hold."""
    demo = Demo(url)
    stream = demo.live("cora", "Friday night live")
    demo.buy("vic", "coins-17500")
    demo.buy("wen", "coins-70")
    demo.gift("vic", stream, "galaxy", 3)
    for _ in range(6):
        demo.gift("vic", stream, "rose")
    demo.gift("wen", stream, "rose")
    return {"stream": stream}


def refused_gift(page: Any, sockets: list[Any]) -> None:
    page.get_by_role("radio", name="Universe").check()
    page.get_by_role("button", name="Send gift").click()
    page.get_by_role("alert").wait_for()


def offline(page: Any, sockets: list[Any]) -> None:
    # The feed's socket is cut and stays down; the browser says it is offline.
    page.context.set_offline(True)
    page.get_by_text("You are offline").wait_for()
    for route in sockets:
        route.close(code=1012, reason="offline")
    page.locator('.connection[data-state="reconnecting"]').wait_for()


def pay_confirmation(page: Any, sockets: list[Any]) -> None:
    page.get_by_role("button", name="Pay ").first.click()
    page.get_by_role("dialog").wait_for()


Then = Callable[[Any, list[Any]], None] | None
Shot = tuple[str, str | None, str, str, Then]


def shots(ids: dict[str, str]) -> list[Shot]:
    """(file name, demo user, route, a heading the page shows when loaded, what to do then)."""
    stream, ended = ids["stream"], ids["ended"]
    return [
        ("signin", None, "#/signin", "Sign in", None),
        ("live", "vic", "#/", "Live now", None),
        ("stream", "vic", f"#/stream/{stream}", "Send a gift", None),
        ("stream-error", "vic", f"#/stream/{stream}", "Send a gift", refused_gift),
        ("stream-offline", "vic", f"#/stream/{stream}", "Send a gift", offline),
        ("stream-ended", "vic", f"#/stream/{ended}", "Send a gift", None),
        ("wallet", "vic", "#/wallet", "History", None),
        ("creator", "cora", "#/creator", "Withdrawals", None),
        ("admin", "root", "#/admin", "Withdrawals to review", None),
        ("admin-confirm", "root", "#/admin", "Withdrawals to review", pay_confirmation),
    ]


def shoot(browser: Any, app: str, shot: Shot) -> None:
    name, user, route, heading, then = shot
    for size, viewport in SIZES.items():
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        sockets: list[Any] = []

        def socket(ws: Any, sockets: list[Any] = sockets) -> None:
            sockets.append(ws)
            ws.connect_to_server()

        page.route_web_socket("**/graphql", socket)
        if user:
            # signed in as the picker does it: the user and a dev token in localStorage
            admin = user == "root"
            token = mint_token(LOCAL_JWT_SECRET, user, "1990-01-01", user.title(), admin=admin)
            signed_in = {"sub": user, "name": user.title(), "role": "", "admin": admin}
            state = json.dumps(json.dumps({**signed_in, "token": token}))
            page.add_init_script(f"localStorage.setItem('livecoins.user', {state})")
        page.goto(f"{app}{route}")
        page.get_by_role("heading", name=heading).first.wait_for()
        if name.startswith("stream") and name != "stream-ended":
            page.locator('.connection[data-state="live"]').wait_for()
        if name.startswith("creator"):  # the live dashboard's first read
            page.locator('[data-testid="stream-total"]', has_text="coin").wait_for()
        if then:
            then(page, sockets)
        time.sleep(0.3)  # fonts and the last fetches settle
        path = OUT / f"{name}-{size}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"wrote {path.relative_to(ROOT)}")
        context.close()


def main() -> None:
    if not CHROMIUM.exists():
        sys.exit(
            "make screenshots needs Debian's chromium (/usr/bin/chromium): apt-get install chromium"
        )
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        with tempfile.TemporaryDirectory() as scratch:
            server = local_server.start(Path(scratch) / "data")
            try:
                ids = demo_data(server.url)
                for shot in shots(ids):
                    shoot(browser, f"{server.url}/app/", shot)
            finally:
                local_server.stop(server)
        # The earnings hold: a second server, since diamonds on hold cannot pay the demo's
        # withdrawals above.
        os.environ["LIVECOINS_EARNINGS_HOLD_SECONDS"] = str(HOLD_SECONDS)
        with tempfile.TemporaryDirectory() as scratch:
            server = local_server.start(Path(scratch) / "data")
            try:
                hold_data(server.url)
                hold = ("creator-hold", "cora", "#/creator", "Withdrawals", None)
                shoot(browser, f"{server.url}/app/", hold)
            finally:
                local_server.stop(server)
        browser.close()


if __name__ == "__main__":
    main()
