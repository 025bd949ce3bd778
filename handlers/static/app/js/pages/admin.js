// Admin: the review queue of pending withdrawals (oldest first), showing who is being paid,
// whether their payouts are enabled at the processor, and the review signals the API returns,
// each paid (the transfer) or rejected after a confirmation; refunds by purchase id, confirmed
// too.

import { act } from "../clicks.js";
import { PENDING_WITHDRAWALS, REFUND_PURCHASE, SETTLE_WITHDRAWAL } from "../documents.js";
import { userErrorMessage } from "../messages.js";
import { confirmAction, field, fill, h, notice, number, plural, when } from "../ui.js";

// A repeated refund is answered like the first (the API changes nothing): what this tab has
// refunded lets it say "already refunded" instead of repeating "Refunded".
const refundedHere = new Set();
const DAY_MS = 86_400_000;

export async function render({ api, session, main, signal, signInHref }) {
  if (!session.user?.admin) {
    fill(main, h("h1", {}, "Admin"), h("p", {}, "Only admins can review withdrawals and refund purchases. ", h("a", { href: signInHref() }, "Sign in as an admin"), "."));
    return;
  }
  const queue = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Show more");
  const refresh = h("button", { type: "button" }, "Refresh");
  const queueMessage = h("div");
  let after = null;

  function signals(w) {
    const r = w.review;
    const flags = [];
    if (w.accountRestricted) flags.push(["danger", "Restricted account"]);
    // where a payouts processor pays: Pay is refused unless the creator's payouts are enabled
    const payout = { ENABLED: ["ok", "Payouts enabled"], ONBOARDING: ["warn", "Payouts not set up yet"], RESTRICTED: ["danger", "Payouts restricted"] }[w.payoutAccountStatus];
    if (payout) flags.push(payout);
    if (r?.accountCreatedAt) {
      const days = Math.floor((Date.now() - Date.parse(r.accountCreatedAt)) / DAY_MS);
      flags.push([days < 7 ? "warn" : "", `Account ${plural(days, "day")} old`]);
    }
    if (r?.newAccountsPercent) flags.push([r.newAccountsPercent >= 50 ? "warn" : "", `${r.newAccountsPercent}% from new accounts`]);
    if (r?.restrictedAccountsPercent) flags.push(["danger", `${r.restrictedAccountsPercent}% from disputed payments`]);
    if (!flags.length) return h("span", { class: "muted" }, "None");
    return h("ul", { class: "signals" }, flags.map(([kind, text]) => h("li", { class: `signal ${kind}` }, text)));
  }

  function row(w) {
    const who = w.account.displayName || w.account.id;
    const what = `${who} ${w.amount.formatted} requested ${when(w.createdAt)}`;
    const pay = h("button", { type: "button", class: "primary", "aria-label": `Pay ${what}` }, "Pay");
    const reject = h("button", { type: "button", class: "danger", "aria-label": `Reject ${what}` }, "Reject");
    const tr = h(
      "tr",
      { "data-withdrawal": w.id },
      h("td", { "data-label": "Requested" }, when(w.createdAt)),
      h("td", { "data-label": "Creator" }, h("div", {}, h("strong", {}, who), h("br"), h("code", {}, w.id))),
      h("td", { class: "num", "data-label": "Amount" }, h("div", {}, h("strong", {}, w.amount.formatted), h("br"), h("span", { class: "muted" }, plural(w.diamonds, "diamond")))),
      h("td", { "data-label": "Signals" }, signals(w)),
      h("td", { class: "actions", "data-label": "Review" }, pay, " ", reject),
    );
    const settle = async (outcome, button) => {
      const paying = outcome === "PAID";
      const sure = await confirmAction(
        paying
          ? { title: `Pay ${who} ${w.amount.formatted}?`, body: "The money is sent to the creator's payout account. This can't be undone.", confirm: `Pay ${w.amount.formatted}` }
          : { title: `Reject ${who}'s ${w.amount.formatted}?`, body: `The ${plural(w.diamonds, "diamond")} go back to the creator's earnings.`, confirm: "Reject", danger: true },
      );
      if (!sure) return;
      // Settling is idempotent by itself: the same outcome again changes nothing.
      act(button, queueMessage, async ({ onRetry }) => {
        const input = { withdrawalId: w.id, outcome };
        const result = (await api.mutate(SETTLE_WITHDRAWAL, { input }, { onRetry })).settleWithdrawal;
        if (result.__typename === "WithdrawalSettled") {
          tr.remove();
          const done = result.withdrawal;
          notice(queueMessage, paying ? `Paid ${who} ${done.amount.formatted}.` : `Rejected ${who}'s ${done.amount.formatted}: the diamonds are back in their earnings.`, "success");
        } else if (result.__typename === "PayoutRefused") {
          notice(queueMessage, `${who}'s ${w.amount.formatted} was not paid: ${result.message}`, "error");
        } else if (result.__typename === "InvalidState" && result.message.includes("already")) {
          notice(queueMessage, `${who}'s ${w.amount.formatted} was already settled, by another admin or an earlier click. The queue is up to date now.`, "info");
          tr.remove();
        } else notice(queueMessage, userErrorMessage(result), "error"); // e.g. its transfer is under way
        if (!queue.querySelector("tr[data-withdrawal]")) await load(true);
      });
    };
    pay.addEventListener("click", () => settle("PAID", pay));
    reject.addEventListener("click", () => settle("REJECTED", reject));
    return tr;
  }

  async function load(reset) {
    if (reset) after = null;
    const { edges, pageInfo } = (await api.query(PENDING_WITHDRAWALS, { first: 20, after }, { signal })).pendingWithdrawals;
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
  refundForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = purchaseId.value.trim();
    const sure = await confirmAction({
      title: `Refund ${id}?`,
      body: "The buyer gets the money back and the purchase's coins are taken from their wallet.",
      confirm: "Refund",
      danger: true,
    });
    if (!sure) return;
    // Refunding again finishes or repeats the first refund: retrying is safe.
    act(refund, refundMessage, async ({ onRetry }) => {
      const result = (await api.mutate(REFUND_PURCHASE, { input: { purchaseId: id } }, { onRetry })).refundPurchase;
      if (result.__typename === "PurchaseRefunded") {
        const p = result.purchase;
        const again = refundedHere.has(p.id);
        refundedHere.add(p.id);
        notice(
          refundMessage,
          again ? `${p.id} was already refunded: nothing changed.` : `Refunded ${p.price.formatted} and took back ${plural(p.coins, "coin")} (${p.id}).`,
          again ? "info" : "success",
        );
      } else if (result.__typename === "InsufficientCoins") {
        notice(refundMessage, `The buyer has already spent those coins (${number(result.available)} of ${number(result.required)} left): nothing changed.`, "error");
      } else notice(refundMessage, userErrorMessage(result), "error");
    });
  });
  more.addEventListener("click", () => act(more, queueMessage, () => load(false)));
  refresh.addEventListener("click", () => act(refresh, queueMessage, () => load(true)));

  await load(true);
  fill(
    main,
    h("h1", {}, "Admin"),
    h(
      "section",
      { class: "card", "aria-labelledby": "queue-title" },
      h("div", { class: "title-row" }, h("h2", { id: "queue-title" }, "Withdrawals to review"), refresh),
      h("p", { class: "muted" }, "Oldest first. Pay sends the money; Reject returns the diamonds to the creator. Signals: whether the creator's payouts are enabled, how old the account is, and how much of what it earned came from new accounts or disputed payments."),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "stack" },
          h("thead", {}, h("tr", {}, ["Requested", "Creator", "Amount", "Signals", "Review"].map((t) => h("th", { scope: "col" }, t)))),
          queue,
        ),
      ),
      more,
      queueMessage,
    ),
    h("section", { class: "card narrow", "aria-labelledby": "refund-title" }, h("h2", { id: "refund-title" }, "Refund a purchase"), refundForm),
  );
}
