// Viewer: the wallet, buying coins, and the history (the ledger, newest first), whose gift
// rows name the gift and the other party (Transaction.transfer). The page reads the wallet
// again while it is shown, so a refund or a gift from another tab appears without a reload.

import { outcomeUnknown } from "../api.js";
import { act, unknownOutcome } from "../clicks.js";
import { CATALOG, WALLET, WALLET_BASIC } from "../documents.js";
import { entryLabel, userErrorMessage } from "../messages.js";
import { TEST_CARDS, buy } from "../payments.js";
import { field, fill, h, notice, number, plural, signed, when } from "../ui.js";

const REFRESH_MS = 10_000;

export async function render({ api, session, main, signal, cleanup, signInHref }) {
  if (!session.user) {
    fill(main, h("h1", {}, "Wallet"), h("p", {}, h("a", { href: signInHref() }, "Sign in"), " to see your wallet."));
    return;
  }
  const balance = h("p", { class: "balance" });
  const restricted = h("div");
  const history = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Show older");
  const historyMessage = h("div");
  const buyMessage = h("div");
  const buySection = h("section", { class: "card", "aria-labelledby": "buy-title" });
  let after = null;
  let shown = 0; // history rows loaded, kept when the page refreshes itself

  function row(node) {
    const reference = node.transfer ? null : h("code", {}, node.referenceId);
    return h(
      "tr",
      {},
      h("td", { "data-label": "When" }, when(node.createdAt)),
      h("td", { "data-label": "What" }, entryLabel(node)),
      h("td", { class: "num", "data-label": "Coins" }, node.coins ? signed(node.coins) : ""),
      h("td", { class: "num", "data-label": "Diamonds" }, node.diamonds ? signed(node.diamonds) : ""),
      h("td", { "data-label": "Reference" }, reference),
    );
  }

  async function load(reset) {
    if (reset) after = null;
    const first = reset ? Math.max(20, shown) : 20;
    const { me } = await api.query(WALLET, { first: Math.min(first, 100), after }, { fallback: WALLET_BASIC, signal });
    fill(
      balance,
      h("span", { class: "big", "data-testid": "coins" }, number(me.wallet.coins)),
      ` ${me.wallet.coins === 1 ? "coin" : "coins"} · `,
      h("span", { "data-testid": "diamonds" }, number(me.wallet.diamonds)),
      ` ${me.wallet.diamonds === 1 ? "diamond" : "diamonds"}`,
    );
    if (me.restricted) notice(restricted, "Your account is restricted after a disputed payment: an admin must clear it before you can buy or send gifts.", "error");
    else if (!me.isAdult) notice(restricted, "Only adults (18+) can buy coins and send gifts.", "info");
    else notice(restricted, "");
    buySection.hidden = !me.isAdult;
    const rows = me.transactions.edges.map(({ node }) => row(node));
    if (reset) {
      fill(history, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Nothing yet.")));
      shown = rows.length;
    } else {
      history.append(...rows);
      shown += rows.length;
    }
    after = me.transactions.pageInfo.endCursor;
    more.hidden = !me.transactions.pageInfo.hasNextPage;
  }

  const { coinPackages } = await api.query(CATALOG, {}, { signal });
  const card = h("select", { name: "card" }, TEST_CARDS.map(([value, label]) => h("option", { value }, label)));
  const intents = {};
  const packages = h(
    "ul",
    { class: "packages" },
    coinPackages.map((p) => {
      // Its name is its visible text, read as a sentence: "Buy 70 coins for $0.99".
      const button = h(
        "button",
        { type: "button", class: "package", "data-package": p.id },
        h("span", { class: "visually-hidden" }, "Buy "),
        h("strong", {}, plural(p.coins, "coin")),
        h("span", { class: "visually-hidden" }, " for "),
        h("span", {}, p.price.formatted),
      );
      button.addEventListener("click", () =>
        act(button, buyMessage, async ({ onRetry }) => {
          let result;
          try {
            result = await buy(api, intents, p, card.value, onRetry);
          } catch (error) {
            notice(buyMessage, unknownOutcome(error, "your purchase", "your balance and history show whether it went through"), "error");
            if (outcomeUnknown(error)) await load(true).catch(() => {});
            return;
          }
          if (result.__typename === "CoinsPurchased") {
            const { purchase } = result;
            notice(buyMessage, `Bought ${plural(purchase.coins, "coin")} for ${purchase.price.formatted} (purchase ${purchase.id}).`, "success");
            await load(true);
          } else notice(buyMessage, userErrorMessage(result), "error");
        }),
      );
      return h("li", {}, button);
    }),
  );
  fill(buySection, h("h2", { id: "buy-title" }, "Buy coins"), field("Pay with", card), packages, buyMessage);
  more.addEventListener("click", () => act(more, historyMessage, () => load(false)));
  await load(true);
  fill(
    main,
    h("h1", {}, "Wallet"),
    h("section", { class: "card", "aria-label": "Balance" }, balance, restricted),
    buySection,
    h(
      "section",
      { class: "card", "aria-labelledby": "history-title" },
      h("h2", { id: "history-title" }, "History"),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "stack" },
          h("thead", {}, h("tr", {}, ["When", "What", "Coins", "Diamonds", "Reference"].map((t) => h("th", { scope: "col" }, t)))),
          history,
        ),
      ),
      more,
      historyMessage,
    ),
  );

  // A refund, a chargeback or a gift made elsewhere shows up while the wallet is open.
  const refresh = () => document.visibilityState === "visible" && load(true).catch(() => {});
  const timer = setInterval(refresh, REFRESH_MS);
  document.addEventListener("visibilitychange", refresh);
  cleanup(() => {
    clearInterval(timer);
    document.removeEventListener("visibilitychange", refresh);
  });
}
