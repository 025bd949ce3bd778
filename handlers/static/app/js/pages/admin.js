// Admin: the review queue of pending withdrawals (oldest first), settled PAID or REJECTED,
// and refunds by purchase id.

import { PENDING_WITHDRAWALS, REFUND_PURCHASE, SETTLE_WITHDRAWAL } from "../documents.js";
import { errorMessage, statusLabel, userErrorMessage } from "../messages.js";
import { busy, field, fill, h, notice, number, when } from "../ui.js";

export async function render({ api, session, main }) {
  if (!session.user?.admin) {
    fill(main, h("h1", {}, "Admin"), h("p", {}, "Only admins can review withdrawals and refund purchases. ", h("a", { href: "#/signin" }, "Sign in as an admin"), "."));
    return;
  }
  const queue = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Show more");
  const refresh = h("button", { type: "button" }, "Refresh");
  const queueMessage = h("div");
  let after = null;

  function row(w) {
    const message = `${w.amount.formatted} requested ${when(w.createdAt)}`;
    const pay = h("button", { type: "button", class: "primary", "aria-label": `Pay ${message}` }, "Pay");
    const reject = h("button", { type: "button", class: "danger", "aria-label": `Reject ${message}` }, "Reject");
    const tr = h(
      "tr",
      { "data-withdrawal": w.id },
      h("td", {}, when(w.createdAt)),
      h("td", {}, h("code", {}, w.id)),
      h("td", { class: "num" }, number(w.diamonds)),
      h("td", { class: "num" }, w.amount.formatted),
      h("td", { class: "actions" }, pay, " ", reject),
    );
    const settle = (outcome, button) =>
      busy(button, async () => {
        try {
          // Settling is idempotent by itself: the same outcome again changes nothing.
          const input = { withdrawalId: w.id, outcome };
          const result = (await api.mutate(SETTLE_WITHDRAWAL, { input })).settleWithdrawal;
          if (result.__typename === "WithdrawalSettled") {
            tr.remove();
            const done = result.withdrawal;
            notice(queueMessage, `${done.amount.formatted}: ${statusLabel(done.status).toLowerCase()}.`, "success");
            if (!queue.children.length) await load(true);
          } else notice(queueMessage, userErrorMessage(result), "error");
        } catch (error) {
          notice(queueMessage, errorMessage(error), "error");
        }
      });
    pay.addEventListener("click", () => settle("PAID", pay));
    reject.addEventListener("click", () => settle("REJECTED", reject));
    return tr;
  }

  async function load(reset) {
    if (reset) after = null;
    const { edges, pageInfo } = (await api.query(PENDING_WITHDRAWALS, { first: 20, after })).pendingWithdrawals;
    const rows = edges.map(({ node }) => row(node));
    if (reset) fill(queue, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Nothing waiting for review.")));
    else queue.append(...rows);
    after = pageInfo.endCursor;
    more.hidden = !pageInfo.hasNextPage;
  }

  const purchaseId = h("input", { name: "purchaseId", required: true, placeholder: "pur_…", autocomplete: "off", spellcheck: "false" });
  const refund = h("button", { type: "submit", class: "danger" }, "Refund");
  const refundMessage = h("div");
  const refundForm = h("form", {}, field("Purchase id", purchaseId, "From the buyer's history (Reference)."), refund, refundMessage);
  refundForm.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(refund, async () => {
      try {
        // Refunding again finishes or repeats the first refund: retrying is safe.
        const input = { purchaseId: purchaseId.value.trim() };
        const result = (await api.mutate(REFUND_PURCHASE, { input })).refundPurchase;
        if (result.__typename === "PurchaseRefunded") {
          const p = result.purchase;
          notice(refundMessage, `Refunded ${p.price.formatted} and took back ${number(p.coins)} coins.`, "success");
        } else if (result.__typename === "InsufficientCoins") {
          notice(refundMessage, `The buyer has already spent those coins (${number(result.available)} of ${number(result.required)} left): nothing changed.`, "error");
        } else notice(refundMessage, userErrorMessage(result), "error");
      } catch (error) {
        notice(refundMessage, errorMessage(error), "error");
      }
    });
  });
  more.addEventListener("click", () => busy(more, () => load(false)));
  refresh.addEventListener("click", () => busy(refresh, () => load(true)));

  fill(
    main,
    h("h1", {}, "Admin"),
    h(
      "section",
      { class: "card", "aria-labelledby": "queue-title" },
      h("div", { class: "title-row" }, h("h2", { id: "queue-title" }, "Withdrawals to review"), refresh),
      h("p", { class: "muted" }, "Oldest first. Pay sends the money; Reject returns the diamonds to the creator."),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["Requested", "Withdrawal", "Diamonds", "Amount", "Review"].map((t) => h("th", { scope: "col" }, t)))),
          queue,
        ),
      ),
      more,
      queueMessage,
    ),
    h("section", { class: "card narrow", "aria-labelledby": "refund-title" }, h("h2", { id: "refund-title" }, "Refund a purchase"), refundForm),
  );
  await load(true);
}
