// Viewer: the wallet, buying coins, and the history (the ledger, newest first).

import { newKey } from "../api.js";
import { CATALOG, PURCHASE_COINS, WALLET, WALLET_BASIC } from "../documents.js";
import { errorMessage, kindLabel, userErrorMessage } from "../messages.js";
import { busy, field, fill, h, notice, number, plural, signed, when } from "../ui.js";

// The sandbox provider's test cards (local server, test stacks). A real provider's
// frontend gets a token from the provider's own widget instead.
const TEST_CARDS = [
  ["tok_visa", "Test card: approved (tok_visa)"],
  ["tok_chargeDeclined", "Test card: declined (tok_chargeDeclined)"],
];

export async function render({ api, session, main }) {
  if (!session.user) {
    fill(main, h("h1", {}, "Wallet"), h("p", {}, h("a", { href: "#/signin" }, "Sign in"), " to see your wallet."));
    return;
  }
  const balance = h("p", { class: "balance" });
  const restricted = h("div");
  const history = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Show older");
  const buyMessage = h("div");
  let after = null;

  async function load(reset) {
    if (reset) after = null;
    const { me } = await api.query(WALLET, { first: 20, after }, { fallback: WALLET_BASIC });
    fill(
      balance,
      h("span", { class: "big", "data-testid": "coins" }, number(me.wallet.coins)),
      " coins · ",
      h("span", { "data-testid": "diamonds" }, number(me.wallet.diamonds)),
      " diamonds",
    );
    notice(
      restricted,
      me.restricted ? "Your account is restricted after a disputed payment: an admin must clear it before you can buy or send gifts." : "",
      "error",
    );
    if (!me.isAdult) notice(restricted, "Only adults (18+) can buy coins and send gifts.", "info");
    const rows = me.transactions.edges.map(({ node }) =>
      h(
        "tr",
        {},
        h("td", {}, when(node.createdAt)),
        h("td", {}, kindLabel(node.kind)),
        h("td", { class: "num" }, node.coins ? signed(node.coins) : ""),
        h("td", { class: "num" }, node.diamonds ? signed(node.diamonds) : ""),
        h("td", {}, h("code", {}, node.referenceId)),
      ),
    );
    if (reset) fill(history, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Nothing yet.")));
    else history.append(...rows);
    after = me.transactions.pageInfo.endCursor;
    more.hidden = !me.transactions.pageInfo.hasNextPage;
  }

  const { coinPackages } = await api.query(CATALOG);
  const card = h("select", { name: "card" }, TEST_CARDS.map(([value, label]) => h("option", { value }, label)));
  const packages = h(
    "ul",
    { class: "packages" },
    coinPackages.map((p) => {
      const buy = h("button", { type: "button", class: "package", "data-package": p.id }, h("strong", {}, plural(p.coins, "coin")), h("span", {}, p.price.formatted));
      buy.setAttribute("aria-label", `Buy ${plural(p.coins, "coin")} for ${p.price.formatted}`);
      buy.addEventListener("click", () =>
        busy(buy, async () => {
          // One key per click, kept across retries: a purchase is charged once.
          const input = { packageId: p.id, paymentToken: card.value, idempotencyKey: newKey("buy") };
          try {
            const result = (await api.mutate(PURCHASE_COINS, { input })).purchaseCoins;
            if (result.__typename === "CoinsPurchased") {
              const { purchase } = result;
              notice(buyMessage, `Bought ${plural(purchase.coins, "coin")} for ${purchase.price.formatted} (purchase ${purchase.id}).`, "success");
              await load(true);
            } else {
              notice(buyMessage, userErrorMessage(result), "error");
            }
          } catch (error) {
            notice(buyMessage, errorMessage(error), "error");
          }
        }),
      );
      return h("li", {}, buy);
    }),
  );
  more.addEventListener("click", () => busy(more, () => load(false)));
  fill(
    main,
    h("h1", {}, "Wallet"),
    h("section", { class: "card", "aria-label": "Balance" }, balance, restricted),
    h("section", { class: "card", "aria-labelledby": "buy-title" }, h("h2", { id: "buy-title" }, "Buy coins"), field("Pay with", card), packages, buyMessage),
    h(
      "section",
      { class: "card", "aria-labelledby": "history-title" },
      h("h2", { id: "history-title" }, "History"),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["When", "What", "Coins", "Diamonds", "Reference"].map((t) => h("th", { scope: "col" }, t)))),
          history,
        ),
      ),
      more,
    ),
  );
  await load(true);
}
