// Viewer: one stream. Its gifts arrive live (the giftFeed subscription) and the ranking is
// read again after each; a signed-in adult sends gifts from here.

import { newKey } from "../api.js";
import { CATALOG, GIFT_FEED, ME, RANKING, SEND_GIFT, STREAM } from "../documents.js";
import { errorMessage, userErrorMessage } from "../messages.js";
import { busy, field, fill, h, notice, number, plural, when } from "../ui.js";

export async function render({ api, session, main }, streamId) {
  const data = await api.query(STREAM, { id: streamId });
  const stream = data.liveStream;
  if (!stream) {
    fill(main, h("h1", {}, "Stream not found"), h("p", {}, h("a", { href: "#/" }, "See who is live")));
    return;
  }

  const status = h("span", { class: "badge" });
  const coins = h("span");
  const ranking = h("ol", { class: "ranking", "aria-label": "Top gifters" });
  const feed = h("ul", { class: "feed", "aria-live": "polite", "aria-relevant": "additions", "aria-label": "Gifts" });
  const connection = h("span", { class: "connection muted", "data-state": "off" });
  const sendMessage = h("div");
  const seen = new Set();

  function showStatus(live) {
    status.className = `badge ${live ? "live" : "ended"}`;
    status.textContent = live ? "LIVE" : "ENDED";
  }

  function showRanking(stream) {
    coins.textContent = `${number(stream.coinsReceived)} coins gifted`;
    fill(
      ranking,
      stream.topGifters.length
        ? stream.topGifters.map((r) =>
            h("li", {}, h("span", { class: "rank" }, `#${r.rank}`), " ", h("strong", {}, r.user.displayName), h("span", { class: "amount" }, `${number(r.coins)} coins`)),
          )
        : h("li", { class: "muted" }, "No gifts yet: be the first."),
    );
  }

  function giftLine(t) {
    return h(
      "li",
      { "data-transfer": t.id },
      h("strong", {}, t.sender.displayName),
      ` sent ${t.quantity} × ${t.gift.name} `,
      h("span", { class: "amount" }, `${number(t.coins)} coins`),
      h("time", { datetime: t.createdAt, class: "muted" }, when(t.createdAt)),
    );
  }

  function addGift(t, atTop = true) {
    if (seen.has(t.id)) return;
    seen.add(t.id);
    feed.querySelector(".empty")?.remove();
    if (atTop) feed.prepend(giftLine(t));
    else feed.append(giftLine(t));
  }

  showStatus(stream.status === "LIVE");
  showRanking(stream);
  for (const { node } of stream.gifts.edges) addGift(node, false);
  if (!seen.size) feed.append(h("li", { class: "muted empty" }, "Gifts appear here as they are sent."));

  const giftPanel = h("section", { class: "card", "aria-labelledby": "send-title" }, h("h2", { id: "send-title" }, "Send a gift"));
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
      { class: "columns" },
      h("section", { class: "card", "aria-labelledby": "feed-title" }, h("div", { class: "title-row" }, h("h2", { id: "feed-title" }, "Gifts, live"), connection), feed),
      h(
        "div",
        {},
        giftPanel,
        h("section", { class: "card", "aria-labelledby": "rank-title" }, h("h2", { id: "rank-title" }, "Top gifters"), ranking),
      ),
    ),
  );

  // The ranking is read again after gifts arrive (at most every 300 ms).
  let pending = null;
  const refreshRanking = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      try {
        const fresh = (await api.query(RANKING, { id: streamId })).liveStream;
        showRanking(fresh);
        showStatus(fresh.status === "LIVE");
      } catch {
        // the next gift tries again
      }
    }, 300);
  };

  const showConnection = (state, text) => {
    connection.dataset.state = state;
    connection.textContent = text;
  };
  let unsubscribe = () => {};
  if (stream.status === "LIVE") {
    showConnection("connecting", "Connecting…");
    unsubscribe = api.subscribe(GIFT_FEED, { streamId }, {
      onConnected: () => showConnection("live", "● Connected"),
      onData: (data) => {
        addGift(data.giftFeed);
        refreshRanking();
      },
      onEnd: () => {
        showConnection("ended", "Stream ended");
        showStatus(false);
        notice(sendMessage, "The stream has ended.", "info");
      },
      onError: () => {
        showConnection("error", "Disconnected");
        notice(sendMessage, "The live feed was interrupted. Reload the page to reconnect.", "error");
      },
    });
  }

  await renderSendForm();
  return () => {
    unsubscribe();
    clearTimeout(pending);
  };

  async function renderSendForm() {
    if (!session.user) {
      giftPanel.append(h("p", {}, h("a", { href: "#/signin" }, "Sign in"), " to send gifts."), sendMessage);
      return;
    }
    if (stream.status !== "LIVE") {
      giftPanel.append(h("p", { class: "muted" }, "This stream has ended."), sendMessage);
      return;
    }
    const [{ gifts }, { me }] = await Promise.all([api.query(CATALOG), api.query(ME)]);
    const wallet = h("p", { class: "muted" }, `You have ${plural(me.wallet.coins, "coin")}. `, h("a", { href: "#/wallet" }, "Buy coins"));
    const gift = h(
      "select",
      { name: "gift" },
      gifts.map((g) => h("option", { value: g.id }, `${g.name} · ${plural(g.coins, "coin")}`)),
    );
    const quantity = h("input", { type: "number", name: "quantity", min: 1, max: 1000, value: 1, inputmode: "numeric", required: true });
    const send = h("button", { type: "submit", class: "primary" }, "Send gift");
    const form = h("form", {}, field("Gift", gift), field("How many", quantity, "1 to 1,000"), send);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(send, async () => {
        // One key per click: a retry of this click (network error, TRY_AGAIN) sends it again
        // and the API answers with the same transfer instead of a second gift.
        const input = { giftId: gift.value, streamId, quantity: Number(quantity.value), idempotencyKey: newKey("gift") };
        try {
          const result = (await api.mutate(SEND_GIFT, { input })).sendGift;
          if (result.__typename === "GiftSent") {
            const t = result.transfer;
            notice(sendMessage, `Sent ${t.quantity} × ${t.gift.name} (${plural(t.coins, "coin")}).`, "success");
            fill(wallet, `You have ${plural(result.wallet.coins, "coin")}. `, h("a", { href: "#/wallet" }, "Buy coins"));
          } else {
            notice(sendMessage, userErrorMessage(result), "error");
          }
        } catch (error) {
          notice(sendMessage, errorMessage(error), "error");
        }
      });
    });
    giftPanel.append(wallet, form, sendMessage);
  }
}
