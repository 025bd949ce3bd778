// Viewer: one stream. Its gifts arrive live (feed.js: giftFeed, caught up after every
// reconnection) as combos in a capped feed with relative times; the ranking and the viewer's
// own place follow. A signed-in adult gives from the gift bar, first on a phone's screen: a
// picker with pictures and prices, the balance always in view, a top-up in place with the
// right package when coins run short, a confirmation for large amounts, one tap to send the
// same again.

import { Intent, outcomeUnknown } from "../api.js";
import { act, unknownOutcome } from "../clicks.js";
import { CATALOG, ME, RANKING, RANKING_BASIC, SEND_GIFT, STREAM } from "../documents.js";
import { StreamFeed, showCombos } from "../feed.js";
import { errorMessage, userErrorMessage } from "../messages.js";
import { DEFAULT_CARD, buy, packageFor, packageLabel } from "../payments.js";
import { confirmAction, field, fill, giftPicture, h, notice, number, plural, refreshTimes } from "../ui.js";

// A gift of this many coins or more is confirmed first (Universe × 1,000 is 44,999,000).
export const CONFIRM_FROM_COINS = 10_000;

export async function render({ api, session, main, signal, cleanup, setTitle, signInHref }, streamId) {
  const signedIn = Boolean(session.user);
  const [{ liveStream: stream }, catalog, mine] = await Promise.all([
    api.query(STREAM, { id: streamId }, { signal }),
    signedIn ? api.query(CATALOG, {}, { signal }) : null,
    signedIn ? api.query(ME, {}, { signal }) : null,
  ]);
  if (!stream) {
    fill(main, h("h1", {}, "Stream not found"), h("p", {}, h("a", { href: "#/" }, "See who is live")));
    return;
  }
  setTitle(stream.title);
  const me = mine?.me ?? null;
  let live = stream.status === "LIVE";
  let balance = me?.wallet.coins ?? 0;

  const status = h("span", { class: "badge" });
  const coins = h("span", { "data-testid": "stream-coins" });
  const ranking = h("ol", { class: "ranking", "aria-label": "Top gifters" });
  const myRank = h("p", { class: "my-rank", "data-testid": "my-rank", hidden: !me });
  const feedList = h("ul", { class: "feed", "aria-live": "polite", "aria-relevant": "additions", "aria-label": "Gifts" });
  const connection = h("span", { class: "connection", "data-state": "off" });
  const giftBar = h("section", { class: "card giftbar", "aria-labelledby": "send-title" });
  const feedTitle = h("h2", { id: "feed-title" }, live ? "Gifts, live" : "Gifts");

  function showStatus() {
    status.className = `badge ${live ? "live" : "ended"}`;
    status.textContent = live ? "LIVE" : "ENDED";
  }

  function showTotals(s) {
    coins.textContent = `${plural(s.coinsReceived, "coin")} gifted`;
    fill(
      ranking,
      s.topGifters.length
        ? s.topGifters.map((r) =>
            h(
              "li",
              { class: r.user.id === me?.id ? "me" : null },
              h("span", { class: "rank" }, `#${r.rank}`),
              " ",
              h("strong", {}, r.user.displayName),
              h("span", { class: "amount" }, plural(r.coins, "coin")),
            ),
          )
        : h("li", { class: "muted" }, "No gifts yet: be the first."),
    );
    if (s.status === "ENDED") ended();
  }

  function showMyRank(r) {
    if (!me || r === undefined) return;
    myRank.hidden = false;
    if (!r || !r.coins) myRank.textContent = "You have not sent a gift here yet.";
    else if (r.rank) myRank.textContent = `Your rank: #${r.rank} with ${plural(r.coins, "coin")}.`;
    else myRank.textContent = `You have sent ${plural(r.coins, "coin")}: outside the top 100 for now.`;
  }

  // The ranking and your rank are read again after gifts land (at most every 300 ms).
  let rankingTimer = null;
  const refreshRanking = () => {
    clearTimeout(rankingTimer);
    rankingTimer = setTimeout(async () => {
      try {
        const fresh = (await api.query(RANKING, { id: streamId }, { fallback: RANKING_BASIC, signal })).liveStream;
        showTotals(fresh);
        showMyRank(fresh.myRank);
      } catch {
        // the next gift reads it again
      }
    }, 300);
  };
  cleanup(() => clearTimeout(rankingTimer));

  function showConnection(state, closes = 0) {
    if (!live && state !== "ended") return;
    const [name, text] = {
      connecting: closes ? ["reconnecting", "Reconnecting…"] : ["connecting", "Connecting…"],
      connected: ["live", "● Connected"],
      closed: ["reconnecting", "Reconnecting…"],
      ended: ["ended", "Stream ended"],
      error: ["error", "Feed stopped"],
    }[state];
    connection.dataset.state = name;
    connection.dataset.retries = String(closes);
    connection.textContent = text;
    connection.title = name === "reconnecting" ? "Gifts sent meanwhile appear when the connection is back." : "";
  }

  function ended() {
    if (!live) return;
    live = false;
    showStatus();
    showConnection("ended");
    feedTitle.textContent = "Gifts";
    renderGiftBar();
  }

  const feed = new StreamFeed(api, streamId, {
    onChange: () => showCombos(feedList, feed.list()),
    onTotals: showTotals,
    onGift: refreshRanking,
    onSocket: showConnection,
    onEnd: ended,
    onError: (error) => {
      showConnection("error");
      notice(feedMessage, `The live feed stopped: ${errorMessage(error)} Reload the page to try again.`, "error");
    },
  });
  const feedMessage = h("div");
  feedList.append(h("li", { class: "muted empty" }, "Gifts appear here as they are sent."));
  feed.add(stream.gifts.edges.map((e) => e.node));

  showStatus();
  showTotals(stream);
  renderGiftBar();
  fill(
    main,
    h(
      "div",
      { class: "stream-head" },
      h("h1", {}, stream.title),
      h("p", {}, status, " by ", h("strong", {}, stream.creator.displayName), " · ", coins),
    ),
    h(
      "div",
      { class: "stream-layout" },
      giftBar,
      h(
        "section",
        { class: "card feed-card", "aria-labelledby": "feed-title" },
        h("div", { class: "title-row" }, feedTitle, connection),
        feedList,
        feedMessage,
      ),
      h("section", { class: "card rank-card", "aria-labelledby": "rank-title" }, h("h2", { id: "rank-title" }, "Top gifters"), myRank, ranking),
    ),
  );
  if (me) refreshRanking();
  if (live) {
    showConnection("connecting");
    cleanup(feed.start());
  }
  const clock = setInterval(() => refreshTimes(feedList), 15_000);
  cleanup(() => clearInterval(clock));

  function renderGiftBar() {
    const title = h("h2", { id: "send-title" }, "Send a gift");
    if (!live) {
      fill(giftBar, title, h("p", { class: "muted" }, "This stream has ended, so it can't receive gifts any more. ", h("a", { href: "#/" }, "See who is live")));
    } else if (!me) {
      fill(giftBar, title, h("p", {}, h("a", { href: signInHref() }, "Sign in"), " to send gifts."));
    } else if (me.id === stream.creator.id) {
      fill(giftBar, title, h("p", {}, "This is your stream: your viewers send the gifts. ", h("a", { href: "#/creator" }, "Your live dashboard")));
    } else if (!me.isAdult) {
      fill(giftBar, title, h("p", { class: "muted" }, "Only adults (18+) can buy coins and send gifts."));
    } else {
      fill(giftBar, ...giftForm(title));
    }
  }

  function giftForm(title) {
    const gifts = catalog.gifts;
    const packages = catalog.coinPackages;
    const intent = new Intent("gift");
    const buyIntents = {};
    const wallet = h("span", { class: "wallet-chip", "data-testid": "balance" });
    const showBalance = () => (wallet.textContent = `You have ${plural(balance, "coin")}`);
    const picker = h(
      "fieldset",
      { class: "gift-picker" },
      h("legend", {}, "Gift"),
      h("div", { class: "tiles" }, gifts.map((g, i) =>
        h(
          "label",
          { class: "tile" },
          h("input", { type: "radio", name: "gift", value: g.id, checked: i === 0 }),
          giftPicture(g.id, 40),
          h("span", { class: "name" }, g.name),
          h("span", { class: "price" }, plural(g.coins, "coin")),
        ),
      )),
    );
    const quantity = h("input", { type: "number", name: "quantity", min: 1, max: 1000, value: 1, inputmode: "numeric", required: true });
    const send = h("button", { type: "submit", class: "primary" }, "Send gift");
    const cost = h("p", { class: "cost muted" });
    const topUp = h("div", { class: "topup" });
    const message = h("div");
    const form = h("form", { class: "gift-form" }, picker, h("div", { class: "send-row" }, field("How many", quantity, "1 to 1,000"), send), cost, topUp, message);

    const choice = () => {
      const id = form.elements.gift.value;
      return { gift: gifts.find((g) => g.id === id), quantity: Number(quantity.value) || 1 };
    };

    function showCost() {
      const { gift, quantity: n } = choice();
      const total = gift.coins * n;
      cost.textContent = `${n} × ${gift.name}: ${plural(total, "coin")}`;
      if (total > balance) offerTopUp(total - balance);
      else fill(topUp);
    }

    function offerTopUp(short) {
      const pkg = packageFor(short, packages);
      const button = h("button", { type: "button", class: "package-inline" }, packageLabel(pkg));
      const bought = h("div");
      const still = pkg.coins < short ? ` The largest package leaves ${number(short - pkg.coins)} to go.` : "";
      button.addEventListener("click", () =>
        act(button, bought, async ({ onRetry }) => {
          let result;
          try {
            result = await buy(api, buyIntents, pkg, DEFAULT_CARD, onRetry);
          } catch (error) {
            notice(bought, unknownOutcome(error, "your purchase", "your balance shows whether it went through"), "error");
            if (outcomeUnknown(error)) await refreshBalance();
            return;
          }
          if (result.__typename !== "CoinsPurchased") return notice(bought, userErrorMessage(result), "error");
          balance = result.wallet.coins;
          showBalance();
          showCost();
          notice(message, `Bought ${plural(result.purchase.coins, "coin")} for ${result.purchase.price.formatted}. You can send your gift now.`, "success");
        }),
      );
      fill(topUp, h("p", {}, `You need ${plural(short, "more coin")}.${still} `, button), bought);
    }

    async function refreshBalance() {
      try {
        balance = (await api.query(ME, {}, { signal })).me.wallet.coins;
        showBalance();
        showCost();
      } catch {
        // still unreachable: the next gift or reload shows it
      }
    }

    async function sendGift({ gift, quantity: n }) {
      const total = gift.coins * n;
      if (total >= CONFIRM_FROM_COINS && total <= balance) {
        const sure = await confirmAction({
          title: "Send this gift?",
          body: `${n} × ${gift.name} costs ${plural(total, "coin")} of your ${number(balance)}.`,
          confirm: `Send ${plural(total, "coin")}`,
        });
        if (!sure) return;
      }
      const base = { giftId: gift.id, streamId, quantity: n };
      const input = { ...base, idempotencyKey: intent.key(base) };
      await act(send, message, async ({ onRetry }) => {
        let result;
        try {
          result = (await api.mutate(SEND_GIFT, { input }, { onRetry })).sendGift;
        } catch (error) {
          notice(message, unknownOutcome(error, "your gift", "your balance shows whether it went through"), "error");
          if (outcomeUnknown(error)) await refreshBalance(); // did it land? the balance says
          return;
        }
        intent.settle();
        if (result.__typename === "GiftSent") {
          const t = result.transfer;
          balance = result.wallet.coins;
          showBalance();
          showCost();
          feed.add([t]);
          refreshRanking();
          const again = h("button", { type: "button", class: "again" }, "Send again");
          again.addEventListener("click", () => sendGift({ gift, quantity: n }));
          notice(message, `Sent ${t.quantity} × ${t.gift.name} (${plural(t.coins, "coin")}). `, "success", again);
        } else if (result.__typename === "InsufficientCoins") {
          balance = result.available;
          showBalance();
          notice(message, userErrorMessage(result), "error");
          offerTopUp(result.required - result.available);
        } else {
          notice(message, userErrorMessage(result), "error");
          if (result.__typename === "StreamNotLive") ended();
        }
      });
    }

    form.addEventListener("input", showCost);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sendGift(choice());
    });
    showBalance();
    showCost();
    return [h("div", { class: "title-row" }, title, wallet), form];
  }
}
