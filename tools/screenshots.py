"""`make screenshots`: every page of the reference app at desktop and phone widths, into
docs/screenshots/, from a fresh `livecoins serve` with a little demo data (two streams, gifts,
a paid and a pending withdrawal). Uses Debian's Chromium (/usr/bin/chromium) through
Playwright, like the browser test."""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import local_server  # noqa: E402
from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def graphql(url: str, token: str, query: str) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the local server just started
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer = json.loads(response.read())
    assert not answer.get("errors"), answer
    return answer["data"]


def demo_data(url: str) -> tuple[str, dict[str, str]]:
    with urllib.request.urlopen(f"{url}/dev/tokens", timeout=5) as response:  # noqa: S310
        tokens = {u["sub"]: u["token"] for u in json.loads(response.read())["users"]}
    cora, vic, wen, root = tokens["cora"], tokens["vic"], tokens["wen"], tokens["root"]

    def live(token: str, title: str) -> str:
        data = graphql(
            url,
            token,
            f'mutation {{ startLiveStream(input: {{title: "{title}"}}) {{ '
            "... on LiveStreamStarted { stream { id } } } }",
        )
        stream_id: str = data["startLiveStream"]["stream"]["id"]
        return stream_id

    def buy(token: str, package: str, key: str) -> None:
        graphql(
            url,
            token,
            f'mutation {{ purchaseCoins(input: {{packageId: "{package}", paymentToken: "tok_visa",'
            f' idempotencyKey: "{key}"}}) {{ __typename }} }}',
        )

    def gift(token: str, stream: str, gift_id: str, quantity: int, key: str) -> None:
        graphql(
            url,
            token,
            f'mutation {{ sendGift(input: {{giftId: "{gift_id}", streamId: "{stream}", '
            f'quantity: {quantity}, idempotencyKey: "{key}"}}) {{ __typename }} }}',
        )

    def withdraw(diamonds: int, key: str) -> str:
        data = graphql(
            url,
            cora,
            f"mutation {{ requestWithdrawal(input: {{diamonds: {diamonds}, "
            f'idempotencyKey: "{key}"}}) '
            "{ ... on WithdrawalRequested { withdrawal { id } } } }",
        )
        withdrawal_id: str = data["requestWithdrawal"]["withdrawal"]["id"]
        return withdrawal_id

    stream = live(cora, "Friday night live")
    other = live(wen, "Cooking with Wen")
    buy(vic, "coins-17500", "s-1")
    buy(wen, "coins-700", "s-2")
    for n, (sender, gift_id, quantity) in enumerate(
        [(vic, "rose", 5), (wen, "panda", 3), (vic, "galaxy", 5), (wen, "love-bang", 4)]
    ):
        gift(sender, stream, gift_id, quantity, f"s-g{n}")
    gift(vic, other, "concert", 1, "s-g9")
    paid = withdraw(2000, "s-w1")
    graphql(
        url,
        root,
        f'mutation {{ settleWithdrawal(input: {{withdrawalId: "{paid}", outcome: PAID}}) '
        "{ __typename } }",
    )
    withdraw(2500, "s-w2")
    return stream, tokens


def main() -> None:
    if not CHROMIUM.exists():
        sys.exit(
            "make screenshots needs Debian's chromium (/usr/bin/chromium): apt-get install chromium"
        )
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        server = local_server.start(Path(scratch) / "data")
        try:
            stream, _ = demo_data(server.url)
            app = f"{server.url}/app/"
            pages = [
                ("signin", None, "#/signin", "Sign in"),
                ("live", "Vic", "#/", "Live now"),
                ("stream", "Vic", f"#/stream/{stream}", "Send a gift"),
                ("wallet", "Vic", "#/wallet", "History"),
                ("creator", "Cora", "#/creator", "Withdrawals"),
                ("admin", "Root", "#/admin", "Withdrawals to review"),
            ]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
                )
                for size, viewport in SIZES.items():
                    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
                    for name, user, route, heading in pages:
                        page = context.new_page()
                        page.goto(f"{app}#/signin")
                        if user:
                            page.get_by_role("button", name=user).first.click()
                            page.get_by_text(f"Signed in as {user}").wait_for()
                        page.goto(f"{app}{route}")
                        page.get_by_role("heading", name=heading).first.wait_for()
                        if name == "stream":
                            page.locator('.connection[data-state="live"]').wait_for()
                        time.sleep(0.3)  # fonts and the last fetches settle
                        path = OUT / f"{name}-{size}.png"
                        page.screenshot(path=str(path), full_page=True)
                        print(f"wrote {path.relative_to(ROOT)}")
                        page.close()
                    context.close()
                browser.close()
        finally:
            local_server.stop(server)


if __name__ == "__main__":
    main()
