"""The reference app (handlers/static/app) in a real browser: headless Debian Chromium driven by
Playwright for Python, against `livecoins serve` (the `local_server` fixture).

Each user is their own browser context (sign-in is shared by the tabs of one browser, as users
expect): a viewer buys coins and sends gifts that an anonymous page sees arrive live; a creator
follows her stream on her dashboard, withdraws and sees it paid; an admin pays it. Then what
goes wrong in the field: quick navigation under latency, a lost answer followed by the user's
own retry, a dropped feed socket while gifts land, a phone's screen, a minor's pages, a
keyboard alone, and axe-core's accessibility rules on every page. Timers and retries run on
Playwright's clock (`page.clock`): the test advances them instead of waiting them out.

Needs /usr/bin/chromium (Debian's `chromium`; `.ci/run` installs it): without it the tests are
skipped, and `make test` says so. Playwright never downloads a browser here: it is pointed at
the system's.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.config import LOCAL_JWT_SECRET

CHROMIUM = Path("/usr/bin/chromium")
# As the machine's notes say: without the background-networking flags Chromium keeps trying
# Google's hosts, which this closed network refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_REASON = (
    "SKIPPED the browser test: no Chromium at /usr/bin/chromium "
    "(install Debian's package: apt-get install chromium)"
)
TIMEOUT_MS = 10_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
AXE = Path(__file__).resolve().parent.parent / "handlers/static/app/vendor/axe.min.js"
# The app's waits (js/api.js): a mutation's retries, the feed's reconnections.
BACKOFF_MS = [300, 800, 1600, 3200, 5000]
RECONNECT_MS = [500, 1000, 2000, 4000, 8000, 10000]
# Network errors the tests cause on purpose; any other console error is a bug.
EXPECTED_CONSOLE = ("ERR_CONNECTION_RESET", "ERR_CONNECTION_REFUSED", "ERR_INTERNET_DISCONNECTED")


def chromium_or_skip() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail("CI must run the browser test: .ci/run installs chromium")
    pytest.skip(SKIP_REASON)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


class App:
    """The app on the local server, one browser context per user, and the server's API for
    setting things up as other users would (tokens minted with the local server's secret)."""

    def __init__(self, browser: Any, url: str) -> None:
        self.browser = browser
        self.url = url
        self.app = f"{url}/app/"
        self.errors: list[str] = []
        self.expected = list(EXPECTED_CONSOLE)  # a test adds the errors it causes
        self.contexts: list[Any] = []

    def open(
        self,
        user: str | None,
        path: str = "",
        viewport: dict[str, int] = DESKTOP,
        clock: bool = False,
    ) -> Any:
        """A page in a new browser (context) signed in as the demo user `user` (None:
        anonymous) at `path`; with `clock`, its timers run on Playwright's clock."""
        context = self.browser.new_context(viewport=viewport)
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        page = self.watch(context.new_page(), user)
        if clock:
            page.clock.install()
        if user:
            page.goto(f"{self.app}#/signin")
            page.get_by_role("button", name=re.compile(rf"^{user}\b")).click()
            page.get_by_text(f"Signed in as {user}").wait_for()
        page.goto(f"{self.app}{path}")
        return page

    def open_as(self, sub: str, path: str, viewport: dict[str, int] = DESKTOP) -> Any:
        """A page signed in as any account `sub` (not only the picker's demo users): the
        sign-in the app keeps in localStorage, with a token minted like the picker's."""
        page = self.open(None, "", viewport)
        user = {"sub": sub, "name": sub.capitalize(), "role": "", "admin": False}
        page.evaluate(
            "user => localStorage.setItem('livecoins.user', JSON.stringify(user))",
            {**user, "token": self.token(sub)},
        )
        page.goto(f"{self.app}{path}")
        page.reload()  # the app reads the sign-in when it starts
        page.get_by_text(f"Signed in as {user['name']}").wait_for()
        return page

    @staticmethod
    def token(sub: str) -> str:
        from handlers.dev_tokens import mint_token

        return mint_token(LOCAL_JWT_SECRET, sub, "1990-01-01", sub.capitalize())

    def watch(self, page: Any, who: str | None) -> Any:
        page.on("pageerror", lambda error: self.errors.append(f"{who}: {error}"))

        def console(message: Any) -> None:
            if message.type == "error" and not any(e in message.text for e in self.expected):
                self.errors.append(f"{who}: {message.text}")

        page.on("console", console)
        return page

    def graphql(self, sub: str, query: str, variables: dict[str, Any] | None = None) -> Any:
        token = self.token(sub)
        request = urllib.request.Request(  # noqa: S310 - the local server
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer = json.loads(response.read())
        assert not answer.get("errors"), answer
        return answer["data"]

    def go_live(self, sub: str, title: str) -> str:
        data = self.graphql(
            sub,
            "mutation S($t: String!) { startLiveStream(input: {title: $t}) { __typename "
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

    def buy(self, sub: str, package: str) -> str:
        data = self.graphql(
            sub,
            "mutation B($p: ID!, $k: String!) { purchaseCoins(input: {packageId: $p, "
            'paymentToken: "tok_visa", idempotencyKey: $k}) { __typename '
            "... on CoinsPurchased { purchase { id } } } }",
            {"p": package, "k": f"setup-{time.monotonic_ns()}"},
        )
        assert data["purchaseCoins"]["__typename"] == "CoinsPurchased", data
        purchase_id: str = data["purchaseCoins"]["purchase"]["id"]
        return purchase_id

    def gift(self, sub: str, stream: str, gift: str, quantity: int = 1) -> str:
        data = self.graphql(
            sub,
            "mutation G($i: SendGiftInput!) { sendGift(input: $i) { __typename "
            "... on GiftSent { transfer { id } } } }",
            {
                "i": {
                    "giftId": gift,
                    "streamId": stream,
                    "quantity": quantity,
                    "idempotencyKey": f"setup-{time.monotonic_ns()}",
                }
            },
        )
        assert data["sendGift"]["__typename"] == "GiftSent", data
        transfer_id: str = data["sendGift"]["transfer"]["id"]
        return transfer_id

    def connect_payouts(self, sub: str) -> None:
        """The creator's payout account (the local sandbox onboards at once)."""
        back = f"{self.url}/app/#/creator"
        data = self.graphql(
            sub,
            "mutation P($i: StartPayoutOnboardingInput!) { startPayoutOnboarding(input: $i) "
            "{ __typename } }",
            {"i": {"returnUrl": back, "refreshUrl": back}},
        )
        assert data["startPayoutOnboarding"]["__typename"] == "PayoutOnboardingStarted", data

    def coins(self, sub: str) -> int:
        coins: int = self.graphql(sub, "{ me { wallet { coins } } }")["me"]["wallet"]["coins"]
        return coins

    def gift_ids(self, stream: str) -> list[str]:
        data = self.graphql(
            "anyone",
            "query L($s: ID!) { liveStream(id: $s) { gifts(first: 100) { edges { node { id } } "
            "} } }",
            {"s": stream},
        )
        return [e["node"]["id"] for e in data["liveStream"]["gifts"]["edges"]]


@pytest.fixture
def app(browser: Any, local_server: Any) -> Iterator[App]:
    running = App(browser, local_server.url)
    yield running
    for context in running.contexts:
        context.close()
    assert running.errors == [], running.errors


def test_buy_gift_watch_withdraw_settle(app: App) -> None:
    from playwright.sync_api import expect

    timings: dict[str, float] = {}
    began = time.monotonic()

    # GIVEN Cora live (her stream titled so this run finds it among others); her page follows
    # her withdrawals on Playwright's clock
    creator = app.open("Cora", "#/creator", clock=True)
    title = f"Browser test {int(time.time())}"
    expect(creator.get_by_role("heading", name="Your stream")).to_be_visible()
    creator.get_by_label("Title").fill(title)
    creator.get_by_role("button", name="Go live").click()
    expect(creator.get_by_text("You are live.")).to_be_visible()
    stream_link = creator.get_by_role("link", name=title)
    stream_id = stream_link.get_attribute("href").rsplit("/", 1)[1]
    timings["creator live"] = time.monotonic() - began

    # AND a second browser watching her stream, signed out
    watcher = app.open(None, f"#/stream/{stream_id}")
    expect(watcher.get_by_role("heading", name=title)).to_be_visible()
    expect(watcher.locator(".connection")).to_have_attribute("data-state", "live")

    # WHEN Vic buys 3,500 coins
    viewer = app.open("Vic", "#/wallet")
    coins_before = int(viewer.get_by_test_id("coins").inner_text().replace(",", ""))
    viewer.get_by_role("button", name="Buy 3,500 coins for $49.99").click()
    expect(viewer.get_by_text(re.compile(r"Bought 3,500 coins for \$49\.99"))).to_be_visible()
    expect(viewer.get_by_test_id("coins")).to_have_text(f"{coins_before + 3500:,}")
    timings["coins bought"] = time.monotonic() - began

    # AND opens the stream from the live list and sends 2 Galaxies, the first answer lost
    # on the way back (the gift landed): the app retries with the same key
    viewer.get_by_role("link", name="Live", exact=True).click()
    viewer.get_by_role("link", name=title).click()
    expect(viewer.get_by_role("heading", name="Send a gift")).to_be_visible()
    keys: list[str] = []

    def lose_first_answer(route: Any) -> None:
        body = route.request.post_data or ""
        if "SendGift" not in body:
            route.continue_()
            return
        keys.append(json.loads(body)["variables"]["input"]["idempotencyKey"])
        if len(keys) == 1:
            route.fetch()  # the server sends the gift; its answer never reaches the page
            route.abort("connectionreset")
        else:
            route.continue_()

    viewer.route("**/graphql", lose_first_answer)
    viewer.get_by_role("radio", name="Galaxy").check()
    viewer.get_by_label("How many").fill("2")
    viewer.get_by_role("button", name="Send gift").click()
    expect(viewer.get_by_text("Sent 2 \u00d7 Galaxy (2,000 coins).")).to_be_visible()
    viewer.unroute("**/graphql")
    assert len(keys) == 2 and keys[0] == keys[1], keys  # one click, one key, sent twice
    expect(viewer.get_by_test_id("balance")).to_have_text(f"You have {coins_before + 1500:,} coins")
    timings["gift sent"] = time.monotonic() - began

    # THEN the watching page sees it arrive once, as one line, and the ranking follows
    gift_line = watcher.locator(".feed li", has_text="Vic sent Galaxy \u00d72")
    expect(gift_line).to_have_count(1)
    expect(watcher.locator(".ranking li").first).to_contain_text("Vic")
    expect(watcher.locator(".ranking li").first).to_contain_text("2,000 coins")
    expect(watcher.get_by_text("2,000 coins gifted")).to_be_visible()
    # AND Vic sees his own place, and Cora's dashboard the gift and the total
    expect(viewer.get_by_test_id("my-rank")).to_have_text("Your rank: #1 with 2,000 coins.")
    expect(creator.locator(".feed li", has_text="Vic sent Galaxy \u00d72")).to_have_count(1)
    expect(creator.get_by_test_id("stream-total")).to_have_text("2,000 coins")
    timings["gift seen live"] = time.monotonic() - began

    # AND a gift Vic cannot afford is refused in words, with the package that helps most
    viewer.get_by_role("radio", name="Universe").check()
    viewer.get_by_label("How many").fill("1")
    expect(viewer.get_by_role("button", name="Buy 17,500 coins for $249.99")).to_be_visible()
    viewer.get_by_role("button", name="Send gift").click()
    expect(viewer.get_by_role("alert")).to_contain_text("You need 44,999 coins for that and have")

    # AND another tab of Vic's browser is signed in too; its history names the gift
    history = app.watch(viewer.context.new_page(), "Vic (tab 2)")
    history.clock.install()
    history.goto(f"{app.app}#/wallet")
    expect(history.get_by_text("Signed in as Vic")).to_be_visible()
    expect(history.get_by_text("Gift sent: 2 \u00d7 Galaxy to Cora")).to_be_visible()

    # WHEN Cora sets up payouts (the local sandbox onboards at once: straight back here)
    expect(creator.get_by_test_id("payout-status")).to_have_text("Not set up")
    creator.get_by_role("button", name="Set up payouts").click()
    expect(creator.get_by_text("Your payouts are enabled.")).to_be_visible()
    expect(creator.get_by_test_id("payout-status")).to_have_text("Enabled")
    timings["payouts enabled"] = time.monotonic() - began

    # AND withdraws $10.00 (2,000 diamonds)
    creator.get_by_role("button", name="Refresh").click()
    creator.get_by_label("Diamonds to withdraw").fill("2000")
    creator.get_by_role("button", name="Request withdrawal").click()
    expect(creator.get_by_text("Requested $10.00: an admin reviews it next.")).to_be_visible()
    row = creator.locator("tr[data-withdrawal]", has_text="Pending review").first
    withdrawal = row.get_attribute("data-withdrawal")
    timings["withdrawal requested"] = time.monotonic() - began

    # AND the admin pays it from the review queue, after saying yes to the confirmation
    admin = app.open("Root", "#/admin")
    queued = admin.locator(f'tr[data-withdrawal="{withdrawal}"]')
    expect(queued).to_contain_text("$10.00")
    expect(queued).to_contain_text("Cora")
    expect(queued).to_contain_text("Payouts enabled")
    queued.get_by_role("button", name=re.compile(r"^Pay ")).click()
    admin.get_by_role("dialog").get_by_role("button", name="Pay $10.00").click()
    expect(admin.get_by_text("Paid Cora $10.00.")).to_be_visible()
    expect(queued).to_have_count(0)
    timings["settled"] = time.monotonic() - began

    # AND refunds a purchase of Vic's, twice: the second time says nothing changed
    purchase = app.buy("vic", "coins-70")
    admin.get_by_label("Purchase id").fill(purchase)
    for said in ("Refunded $0.99 and took back 70 coins", "was already refunded: nothing changed"):
        admin.get_by_role("button", name="Refund").click()
        admin.get_by_role("dialog").get_by_role("button", name="Refund").click()
        expect(admin.get_by_text(said)).to_be_visible()
    # AND Vic's open wallet shows the refund without a reload (its refresh, on the clock)
    history.clock.run_for(10_000)
    expect(history.get_by_role("cell", name="Refund", exact=True)).to_be_visible()

    # THEN Cora's page follows it to Paid by itself (its poll, on the clock), and the
    # request's message says what became of it
    creator.clock.run_for(3000)
    expect(creator.locator(f'tr[data-withdrawal="{withdrawal}"]')).to_contain_text("Paid")
    expect(creator.get_by_text("Your $10.00 withdrawal was paid.")).to_be_visible()
    expect(creator.get_by_text("an admin reviews it next")).to_have_count(0)

    # AND when she ends the stream, she gets its summary, the watching page says so and
    # Vic's gift bar is gone
    creator.get_by_role("button", name="End stream").click()
    creator.get_by_role("dialog").get_by_role("button", name="End stream").click()
    expect(creator.get_by_role("heading", name="Your stream has ended.")).to_be_visible()
    expect(creator.get_by_test_id("summary-coins")).to_have_text("2,000")
    expect(watcher.locator(".connection")).to_have_attribute("data-state", "ended")
    expect(viewer.get_by_text("This stream has ended")).to_be_visible()
    expect(viewer.get_by_role("button", name="Send gift")).to_have_count(0)
    timings["total"] = time.monotonic() - began
    print("browser test timings (s):", {k: round(v, 1) for k, v in timings.items()})


def test_quick_navigation_under_latency_shows_the_last_page(app: App) -> None:
    from playwright.sync_api import expect

    # GIVEN Vic's page with 300 ms of latency on every request, and a live stream
    stream = app.go_live("host-race", "Race stream")
    page = app.open("Vic", "#/")
    expect(page.get_by_role("link", name="Race stream")).to_be_visible()
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    conditions = {"offline": False, "downloadThroughput": -1, "uploadThroughput": -1}
    cdp.send("Network.emulateNetworkConditions", {**conditions, "latency": 300})
    pending: set[Any] = set()
    page.on("request", lambda r: pending.add(r))
    page.on("requestfinished", lambda r: pending.discard(r))
    page.on("requestfailed", lambda r: pending.discard(r))
    sockets: list[Any] = []
    page.on("websocket", lambda s: sockets.append(s))

    def settle() -> None:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        page.wait_for_timeout(50)
        while pending and time.monotonic() < deadline:  # real network latency, not app timers
            page.wait_for_timeout(50)
        assert not pending, [r.url for r in pending]

    # WHEN Vic clicks Creator, then Live within 100 ms
    page.get_by_role("link", name="Creator", exact=True).click()
    page.get_by_role("link", name="Live", exact=True).click()
    settle()
    # THEN the Live page is shown, whole: URL, tab, title and body agree
    expect(page.get_by_role("heading", name="Live now")).to_be_visible()
    expect(page.get_by_role("heading", name="Your stream")).to_have_count(0)
    assert page.title() == "Live now \u00b7 LiveCoins"
    expect(page.locator('#nav a[aria-current="page"]')).to_have_text("Live")

    # WHEN Vic opens the stream and leaves it for Live while it loads
    page.get_by_role("link", name="Race stream").click()
    page.wait_for_timeout(450)  # the stream's first read is back; its feed may be starting
    page.get_by_role("link", name="Live", exact=True).click()
    settle()
    # THEN nothing of the stream page is left: its body, and its gift feed's socket
    expect(page.get_by_role("heading", name="Live now")).to_be_visible()
    expect(page.get_by_role("heading", name="Send a gift")).to_have_count(0)
    for socket in sockets:
        if not socket.is_closed():
            socket.wait_for_event("close")

    # AND an unknown route says so in its title too
    page.goto(f"{app.app}#/nope")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert page.title() == "Not found \u00b7 LiveCoins"
    app.end("host-race", stream)


def test_lost_answer_then_manual_retry_sends_one_gift(app: App) -> None:
    from playwright.sync_api import expect

    # GIVEN Wen with coins on a live stream, her page on Playwright's clock
    stream = app.go_live("host-lost", "Lost answers")
    app.buy("wen", "coins-3500")
    before = app.coins("wen")
    page = app.open("Wen", f"#/stream/{stream}", clock=True)
    page.get_by_role("radio", name="Galaxy").check()

    # AND a network that loses the first answer (the gift lands) and then reaches nothing
    keys: list[str] = []

    def unreachable_after_first(route: Any) -> None:
        body = route.request.post_data or ""
        if "SendGift" not in body:
            route.continue_()
            return
        keys.append(json.loads(body)["variables"]["input"]["idempotencyKey"])
        if len(keys) == 1:
            route.fetch()
            route.abort("connectionreset")
        else:
            route.abort("connectionrefused")

    page.route("**/graphql", unreachable_after_first)

    # WHEN she sends it: the app retries 5 times (the clock runs each wait) and gives up
    page.get_by_role("button", name="Send gift").click()
    message = page.locator(".gift-form .notice")
    for attempt, wait in enumerate(BACKOFF_MS, start=1):
        expect(message).to_contain_text(f"Retrying ({attempt})")
        page.clock.run_for(wait)
    # THEN it says so once, with no retry message left anywhere, and the balance is read
    # again: it shows the gift was charged
    expect(message).to_contain_text("We could not confirm your gift")
    expect(page.get_by_text(re.compile("Retrying"))).to_have_count(0)
    expect(page.get_by_test_id("balance")).to_have_text(f"You have {before - 1000:,} coins")
    assert len(keys) == 6 and len(set(keys)) == 1, keys

    # WHEN the network is back and she presses Send again (same gift, same quantity)
    page.unroute("**/graphql")
    sent: list[str] = []
    page.on("request", lambda r: "SendGift" in (r.post_data or "") and sent.append(r.post_data))
    page.get_by_role("button", name="Send gift").click()
    # THEN the app repeats the same request: the API answers the first gift, no second one
    expect(message).to_have_text("Sent 1 \u00d7 Galaxy (1,000 coins). Send again")
    assert json.loads(sent[0])["variables"]["input"]["idempotencyKey"] == keys[0]
    assert len(app.gift_ids(stream)) == 1
    assert app.coins("wen") == before - 1000
    expect(page.locator(".feed li")).to_have_count(1)

    # AND "Send again" is a new gift, on purpose
    page.get_by_role("button", name="Send again").click()
    expect(page.locator(".feed li", has_text="Wen sent Galaxy \u00d72")).to_have_count(1)
    assert len(app.gift_ids(stream)) == 2
    app.end("host-lost", stream)


def test_reconnect_gap_is_backfilled(app: App) -> None:
    from playwright.sync_api import expect

    # GIVEN an anonymous viewer of a stream whose feed socket the test can cut
    stream = app.go_live("host-gap", "Gap stream")
    app.buy("vic", "coins-700")
    before = app.gift("vic", stream, "rose")
    state: dict[str, Any] = {"allow": True, "open": []}

    def socket(route: Any) -> None:
        if not state["allow"]:
            route.close(code=1012, reason="server restarting")
            return
        state["open"].append((route, route.connect_to_server()))

    context = app.browser.new_context(viewport=DESKTOP)
    app.contexts.append(context)
    page = app.watch(context.new_page(), "watcher")
    page.clock.install()
    page.route_web_socket(re.compile(r"^ws://.*/graphql$"), socket)
    subscribed: list[dict[str, Any]] = []  # the variables of each subscribe the page sent
    pushed: list[str] = []  # the gifts the server sent it

    def frames(ws: Any) -> None:
        def sent(frame: Any) -> None:
            message = json.loads(frame) if isinstance(frame, str) else {}
            if message.get("type") == "subscribe":
                subscribed.append(message["payload"]["variables"])

        def received(frame: Any) -> None:
            message = json.loads(frame) if isinstance(frame, str) else {}
            if message.get("type") == "next" and "giftFeed" in (
                message["payload"].get("data") or {}
            ):
                pushed.append(message["payload"]["data"]["giftFeed"]["id"])

        ws.on("framesent", sent)
        ws.on("framereceived", received)

    page.on("websocket", frames)
    page.goto(f"{app.app}#/stream/{stream}")
    connection = page.locator(".connection")
    expect(connection).to_have_attribute("data-state", "live")
    expect(page.locator(".feed li")).to_have_count(1)
    expect(page.get_by_test_id("stream-coins")).to_have_text("1 coin gifted")

    # WHEN the socket drops and stays down for 7 attempts (longer than a give-up after 5)
    state["allow"] = False
    for route, server in state["open"]:
        server.close()
        route.close(code=1012, reason="server restarting")
    # AND gifts land meanwhile: 5 roses, then a panda
    gap = [app.gift("vic", stream, "rose") for _ in range(5)] + [app.gift("vic", stream, "panda")]
    for closes in range(1, 8):
        # THEN the page says it is reconnecting, never "Connected"
        expect(connection).to_have_attribute("data-retries", str(closes))
        expect(connection).to_have_attribute("data-state", "reconnecting")
        if closes == 7:
            state["allow"] = True
        page.clock.run_for(RECONNECT_MS[min(closes - 1, len(RECONNECT_MS) - 1)])

    # THEN once the server answers again the page is connected, subscribed after the last gift
    # it had (the server sends the gap), and has every gift of the gap, once: the 5 roses one
    # combo with the first, the panda its own line
    expect(connection).to_have_attribute("data-state", "live")
    assert {"streamId": stream, "after": before} in subscribed, subscribed
    expect(page.locator(".feed li", has_text="Vic sent Panda \u00d71")).to_have_count(1)
    # sent by the server, not only read back (the frames' events may trail what the page shows)
    waited = time.monotonic() + 10
    while not set(gap) <= set(pushed) and time.monotonic() < waited:
        page.wait_for_timeout(50)
    assert set(gap) <= set(pushed), (gap, pushed)
    expect(page.locator(".feed li", has_text="Vic sent Rose \u00d76")).to_have_count(1)
    expect(page.locator(".feed li", has_text="Vic sent Panda \u00d71")).to_have_count(1)
    shown = " ".join(page.locator(".feed li").evaluate_all("els => els.map(e => e.dataset.gifts)"))
    assert sorted(shown.split()) == sorted(app.gift_ids(stream)) and set(gap) <= set(shown.split())
    expect(page.get_by_test_id("stream-coins")).to_have_text("11 coins gifted")
    # AND a live gift after it arrives as usual, joining nothing twice
    app.gift("vic", stream, "panda")
    expect(page.locator(".feed li", has_text="Vic sent Panda \u00d72")).to_have_count(1)
    app.end("host-gap", stream)


def test_a_full_feed_is_followed_through_the_digest(app: App) -> None:
    from contextlib import ExitStack

    from playwright.sync_api import expect
    from websockets.sync.client import connect

    # GIVEN a stream whose giftFeed is full: 100 other viewers (the server's cap) hold it
    stream = app.go_live("host-full", "Full stream")
    app.buy("vic", "coins-700")
    url = app.url.replace("http", "ws", 1) + "/graphql"
    feed = {"query": "subscription F($s: ID!) { giftFeed(streamId: $s) { id } }"}

    def viewer(sockets: ExitStack) -> Any:
        socket = sockets.enter_context(connect(url, subprotocols=["graphql-transport-ws"]))  # type: ignore[list-item]
        socket.send(json.dumps({"type": "connection_init"}))
        assert json.loads(socket.recv(timeout=10))["type"] == "connection_ack"
        payload = {**feed, "variables": {"s": stream}}
        socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        return socket

    with ExitStack() as sockets:
        for _ in range(100):
            viewer(sockets)
        probe = viewer(sockets)  # the 101st: refused once the 100 hold their places
        refused = json.loads(probe.recv(timeout=10))
        assert refused["payload"]["errors"][0]["extensions"] == {"code": "FEED_FULL"}, refused
        # WHEN a viewer opens the stream and gifts land
        page = app.open(None, f"#/stream/{stream}")
        expect(page.locator(".connection")).to_have_attribute("data-state", "live")
        for gift in ("rose", "rose", "panda"):
            app.gift("vic", stream, gift)
        # THEN the page follows the stream's digest instead: the gifts (a digest's largest,
        # here all of them) in the feed, the total and the ranking, and no error
        expect(page.locator(".feed li", has_text="Vic sent Rose \u00d72")).to_have_count(1)
        expect(page.locator(".feed li", has_text="Vic sent Panda \u00d71")).to_have_count(1)
        expect(page.get_by_test_id("stream-coins")).to_have_text("7 coins gifted")
        expect(page.locator(".rank-card li", has_text="Vic")).to_have_count(1)
        expect(page.get_by_text("The live feed stopped")).to_have_count(0)
        # AND when the stream ends, the digest's last message says so
        app.end("host-full", stream)
        expect(page.locator(".connection")).to_have_attribute("data-state", "ended")


def test_phone_layout(app: App) -> None:
    from playwright.sync_api import expect

    # GIVEN a stream with a 40-character unbroken title, and a withdrawal waiting for review
    long_title = "Supercalifragilisticexpialidociousstream"
    assert len(long_title) == 40
    stream = app.go_live("host-phone", long_title)
    app.buy("vic", "coins-3500")
    app.gift("vic", stream, "galaxy", 2)
    app.connect_payouts("host-phone")
    app.graphql(
        "host-phone",
        'mutation { requestWithdrawal(input: {diamonds: 2000, idempotencyKey: "phone"}) '
        "{ __typename } }",
    )

    # WHEN Vic opens it on a 390 x 844 phone
    page = app.open("Vic", f"#/stream/{stream}", viewport=PHONE)
    send = page.get_by_role("button", name="Send gift")
    expect(send).to_be_visible()
    # THEN the gift bar is on the first screen, and nothing is wider than the phone
    box = send.bounding_box()
    assert box["y"] + box["height"] <= PHONE["height"], box
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # AND on the admin queue, the amount, Pay and Reject are on the screen
    admin = app.open("Root", "#/admin", viewport=PHONE)
    row = admin.locator("tr[data-withdrawal]", has_text="Host-phone").first
    for part in (row.get_by_text("$10.00"), row.get_by_role("button", name=re.compile("^Pay "))):
        box = part.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    reject = row.get_by_role("button", name=re.compile("^Reject ")).bounding_box()
    assert reject["x"] + reject["width"] <= PHONE["width"], reject
    assert admin.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    app.end("host-phone", stream)


def test_a_minor_is_offered_no_money_controls_and_sign_in_comes_back(app: App) -> None:
    from playwright.sync_api import expect

    # GIVEN Kid (under 18) signing in from a stream's "Sign in" link: back on the stream
    stream = app.go_live("host-minor", "Everyone welcome")
    page = app.open(None, f"#/stream/{stream}")
    page.get_by_role("link", name="Sign in").last.click()
    page.get_by_role("button", name=re.compile(r"^Kid\b")).click()
    expect(page.get_by_role("heading", name="Everyone welcome")).to_be_visible()
    # THEN no control that moves money is offered, on any page
    expect(page.get_by_text("Only adults (18+) can buy coins and send gifts.")).to_be_visible()
    expect(page.get_by_role("button", name="Send gift")).to_have_count(0)

    page.goto(f"{app.app}#/wallet")
    expect(page.get_by_text("Only adults (18+) can buy coins and send gifts.")).to_be_visible()
    expect(page.get_by_role("heading", name="Buy coins")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Buy "))).to_have_count(0)

    page.goto(f"{app.app}#/creator")
    expect(page.get_by_text("Only adults (18+) can go live.")).to_be_visible()
    expect(page.get_by_role("button", name="Go live")).to_have_count(0)
    expect(page.get_by_role("button", name="Request withdrawal")).to_have_count(0)

    # AND a creator is not offered the gift form on her own stream
    own = app.open_as("host-minor", f"#/stream/{stream}")
    expect(own.get_by_text("This is your stream")).to_be_visible()
    expect(own.get_by_role("button", name="Send gift")).to_have_count(0)

    # AND a token the API refuses signs the page out, with a way to sign in again
    app.expected.append("status of 401 (Unauthorized)")
    own.evaluate(
        "() => { const u = JSON.parse(localStorage.getItem('livecoins.user'));"
        " u.token = 'not-a-token'; localStorage.setItem('livecoins.user', JSON.stringify(u)); }"
    )
    own.goto(f"{app.app}#/wallet")
    own.reload()
    expect(own.get_by_text("Your sign-in has expired.").first).to_be_visible()
    expect(own.locator("#account").get_by_role("link", name="Sign in")).to_be_visible()
    expect(own.get_by_text("Signed in as")).to_have_count(0)
    app.end("host-minor", stream)


def test_keyboard_only_gifting(app: App) -> None:
    from playwright.sync_api import expect

    # GIVEN Wen with coins on a stream, using the keyboard alone
    stream = app.go_live("host-keys", "Keys only")
    app.buy("wen", "coins-17500")
    page = app.open("Wen", f"#/stream/{stream}")
    expect(page.get_by_role("heading", name="Send a gift")).to_be_visible()
    focused = "() => document.activeElement"

    def tab_to(check: str) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate(f"() => {{ const e = document.activeElement; return {check}; }}"):
                return
        raise AssertionError(f"Tab never reached {check}")

    # WHEN she tabs into the gift picker, picks Panda with an arrow key, types 3, presses Enter
    tab_to("e.type === 'radio'")
    page.keyboard.press("ArrowRight")
    assert page.evaluate(f"({focused})().value") == "panda"
    page.keyboard.press("Tab")
    page.keyboard.press("Control+a")
    page.keyboard.type("3")
    page.keyboard.press("Enter")
    # THEN the gift is sent
    expect(page.get_by_text("Sent 3 \u00d7 Panda (15 coins).")).to_be_visible()

    # WHEN she picks Interstellar (10,000 coins): a confirmation asks first; Escape says no
    tab_to("e.type === 'radio'")
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    assert page.evaluate(f"({focused})().value") == "interstellar"
    page.keyboard.press("Tab")
    page.keyboard.press("Control+a")
    page.keyboard.type("1")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Send this gift?")
    expect(dialog).to_be_visible()
    assert page.evaluate(f"({focused})().textContent") == "Cancel"  # the safe choice first
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    assert len(app.gift_ids(stream)) == 1
    # AND Enter on its confirm button sends it
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Sent 1 \u00d7 Interstellar (10,000 coins).")).to_be_visible()
    assert len(app.gift_ids(stream)) == 2
    app.end("host-keys", stream)


def test_no_serious_accessibility_violations(app: App) -> None:
    """axe-core (vendored, MPL-2.0) on every page, signed in as who uses it, at both widths
    for the stream: no violation of impact serious or critical."""
    from playwright.sync_api import expect

    stream = app.go_live("host-axe", "Accessible stream")
    app.buy("wen", "coins-700")
    for gift in ("rose", "rose", "panda"):
        app.gift("wen", stream, gift)
    # (who, where, a heading that says the page is loaded, width); one browser per user
    pages = [
        (None, "#/signin", "Sign in", DESKTOP),
        ("Wen", "#/", "Live now", DESKTOP),
        ("Wen", f"#/stream/{stream}", "Send a gift", DESKTOP),
        ("Wen", f"#/stream/{stream}", "Send a gift", PHONE),
        ("Wen", "#/wallet", "History", DESKTOP),
        ("host-axe", "#/creator", "Withdrawals", DESKTOP),
        ("Root", "#/admin", "Withdrawals to review", PHONE),
    ]
    found = {}
    opened: dict[str | None, Any] = {}
    for user, path, heading, viewport in pages:
        page = opened.get(user)
        if page is None:
            page = opened[user] = (
                app.open_as(user, path) if user and user.islower() else app.open(user, path)
            )
        else:
            page.goto(f"{app.app}{path}")
        page.set_viewport_size(viewport)
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
        if not page.evaluate("typeof axe !== 'undefined'"):
            page.add_script_tag(path=str(AXE))
        violations = page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => ['serious', 'critical'].includes(v.impact))"
            ".map(v => ({id: v.id, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"
        )
        if violations:
            found[f"{path} {viewport['width']}"] = violations
    assert found == {}, found
    app.end("host-axe", stream)


@pytest.fixture(scope="module")
def stripe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """A second `livecoins serve` paying creators through Stripe Connect (the local fake of its
    API, tests/stripe_connect_fake.py), payout accounts read again on every look."""
    chromium_or_skip()
    from tests import local_server as server
    from tests.stripe_connect_fake import CONNECT_WEBHOOK_SECRET, StripeConnectFake, served_apart
    from tests.stripe_fake import SECRET_KEY

    fake = StripeConnectFake()
    with served_apart(fake) as url, pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "LIVECOINS_PAYOUTS_PROVIDER": "stripe",
            "LIVECOINS_STRIPE_SECRET_KEY": SECRET_KEY,
            "LIVECOINS_STRIPE_CONNECT_WEBHOOK_SECRET": CONNECT_WEBHOOK_SECRET,
            "LIVECOINS_STRIPE_API_BASE": url,
            "LIVECOINS_PAYOUT_REFRESH_SECONDS": "0",
        }.items():
            patch.setenv(name, value)
        running = server.start(tmp_path_factory.mktemp("serve-stripe") / "data")
        try:
            yield running, fake
        finally:
            server.stop(running)


def test_payouts_through_stripes_hosted_onboarding(
    browser: Any, stripe_server: tuple[Any, Any]
) -> None:
    from playwright.sync_api import expect

    running, fake = stripe_server
    app = App(browser, running.url)
    try:
        # GIVEN Cora on her creator page, with no payout account yet
        page = app.open_as("cora", "#/creator")
        expect(page.get_by_test_id("payout-status")).to_have_text("Not set up")
        visits: list[str] = []

        def stripe(route: Any) -> None:
            """Stripe's hosted onboarding: the first visit leaves before finishing; the second
            finishes it. Either way Stripe sends the creator back to the return URL."""
            visits.append(route.request.url)
            link = next(link for link in fake.links if link["url"] == route.request.url)
            if len(visits) > 1:
                fake.complete_onboarding(link["account"])
            route.fulfill(status=302, headers={"Location": link["_return_url"]})

        page.route("https://connect.stripe.com/**", stripe)
        # WHEN she starts, and comes back before finishing
        page.get_by_role("button", name="Set up payouts").click()
        expect(page.get_by_test_id("payout-status")).to_have_text("Setup not finished")
        # THEN her page says what Stripe still needs
        due = page.get_by_role("list", name="Still due")
        expect(due.get_by_role("listitem")).to_have_count(3)
        expect(due).to_contain_text("Individual: verification document")
        assert page.url.endswith("#/creator?payouts=return"), page.url
        # WHEN she continues and finishes THEN payouts are enabled, nothing is due
        page.get_by_role("button", name="Continue setup").click()
        expect(page.get_by_text("Your payouts are enabled.")).to_be_visible()
        expect(page.get_by_test_id("payout-status")).to_have_text("Enabled")
        expect(page.get_by_role("list", name="Still due")).to_have_count(0)
        assert len(visits) == 2 and len(fake.accounts) == 1
        # WHEN Stripe disables her payouts (information overdue) and notifies the payouts
        # endpoint THEN her page says so
        account = next(iter(fake.accounts))
        fake.restrict(account)
        payload, signature = fake.thin_event("v2.core.account[requirements].updated", account)
        delivery = urllib.request.Request(  # noqa: S310 - the local server
            f"{running.url}/webhooks/stripe-connect",
            data=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        )
        with urllib.request.urlopen(delivery, timeout=10) as answer:  # noqa: S310
            assert answer.status == 200
        page.reload()
        expect(page.get_by_test_id("payout-status")).to_have_text("Restricted")
        expect(page.get_by_role("button", name="Fix payout details")).to_be_visible()
        expect(page.get_by_role("list", name="Still due")).to_contain_text("verification")
    finally:
        for context in app.contexts:
            context.close()
    assert app.errors == [], app.errors
