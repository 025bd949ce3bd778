// Creator: go live and end the stream, diamonds and earnings, withdrawals and their status.

import { newKey } from "../api.js";
import { CREATOR, CREATOR_BASIC, END_STREAM, MY_STREAM, REQUEST_WITHDRAWAL, START_STREAM } from "../documents.js";
import { errorMessage, statusLabel, userErrorMessage } from "../messages.js";
import { busy, field, fill, h, notice, number, when } from "../ui.js";

export async function render({ api, session, main }) {
  if (!session.user) {
    fill(main, h("h1", {}, "Creator"), h("p", {}, h("a", { href: "#/signin" }, "Sign in"), " to go live and withdraw."));
    return;
  }
  const streamPanel = h("section", { class: "card", "aria-labelledby": "stream-title" });
  const earnings = h("dl", { class: "facts" });
  const withdrawals = h("tbody");
  const withdrawMessage = h("div");
  const streamMessage = h("div");
  let me = null;

  async function loadStream() {
    const { edges } = (await api.query(MY_STREAM)).liveStreams;
    const mine = edges.map((e) => e.node).find((s) => s.creator.id === me.id);
    fill(streamPanel, h("h2", { id: "stream-title" }, "Your stream"));
    if (mine) {
      const end = h("button", { type: "button", class: "danger" }, "End stream");
      end.addEventListener("click", () =>
        busy(end, async () => {
          try {
            const input = { streamId: mine.id, idempotencyKey: newKey("end") };
            const result = (await api.mutate(END_STREAM, { input })).endLiveStream;
            if (result.__typename === "LiveStreamEnded") {
              await loadStream();
              notice(streamMessage, "Your stream has ended.", "success");
            } else notice(streamMessage, userErrorMessage(result), "error");
          } catch (error) {
            notice(streamMessage, errorMessage(error), "error");
          }
        }),
      );
      streamPanel.append(
        h("p", {}, h("span", { class: "badge live" }, "LIVE"), " ", h("a", { href: `#/stream/${encodeURIComponent(mine.id)}` }, mine.title)),
        h("p", { class: "muted" }, `Since ${when(mine.startedAt)} · ${number(mine.coinsReceived)} coins gifted`),
        end,
        streamMessage,
      );
      return;
    }
    const title = h("input", { name: "title", maxlength: 100, required: true, placeholder: "Friday night" });
    const start = h("button", { type: "submit", class: "primary" }, "Go live");
    const form = h("form", {}, field("Title", title, "1 to 100 characters"), start);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(start, async () => {
        try {
          const input = { title: title.value, idempotencyKey: newKey("live") };
          const result = (await api.mutate(START_STREAM, { input })).startLiveStream;
          if (result.__typename === "LiveStreamStarted") {
            await loadStream();
            notice(streamMessage, "You are live.", "success");
          } else notice(streamMessage, userErrorMessage(result), "error");
        } catch (error) {
          notice(streamMessage, errorMessage(error), "error");
        }
      });
    });
    streamPanel.append(form, streamMessage);
  }

  async function loadMoney() {
    me = (await api.query(CREATOR, {}, { fallback: CREATOR_BASIC })).me;
    const e = me.earnings;
    // Without the earnings hold (an API before it, or a hold of 0) every diamond is available.
    const available = e.availableDiamonds ?? e.diamonds;
    fill(
      earnings,
      fact("Diamonds", number(e.diamonds), "diamonds"),
      fact("Worth", e.cashValue.formatted),
      fact("Available to withdraw", `${number(available)} diamonds`, "available"),
      e.pendingDiamonds ? fact("On hold", `${number(e.pendingDiamonds)} diamonds, available from ${when(e.nextAvailableAt)}`) : null,
      fact("You can still request today", e.remainingToday.formatted),
      fact("Smallest withdrawal", e.minimumWithdrawal.formatted),
    );
    if (me.restricted) notice(withdrawMessage, "Your account is restricted after a disputed payment: withdrawals wait until an admin clears it.", "error");
    const rows = me.withdrawals.edges.map(({ node }) =>
      h(
        "tr",
        { "data-withdrawal": node.id },
        h("td", {}, when(node.createdAt)),
        h("td", { class: "num" }, node.amount.formatted),
        h("td", { class: "num" }, number(node.diamonds)),
        h("td", {}, h("span", { class: `badge ${node.status.toLowerCase()}` }, statusLabel(node.status))),
        h("td", {}, when(node.settledAt)),
      ),
    );
    fill(withdrawals, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No withdrawals yet.")));
    return me.withdrawals.edges.some(({ node }) => node.status === "PENDING");
  }

  const diamonds = h("input", { type: "number", name: "diamonds", min: 1, step: 1, required: true, inputmode: "numeric" });
  const request = h("button", { type: "submit", class: "primary" }, "Request withdrawal");
  const refresh = h("button", { type: "button" }, "Refresh");
  const form = h("form", {}, field("Diamonds to withdraw", diamonds, "A diamond is worth half a cent."), request);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(request, async () => {
      try {
        const input = { diamonds: Number(diamonds.value), idempotencyKey: newKey("wd") };
        const result = (await api.mutate(REQUEST_WITHDRAWAL, { input })).requestWithdrawal;
        if (result.__typename === "WithdrawalRequested") {
          notice(withdrawMessage, `Requested ${result.withdrawal.amount.formatted}: an admin reviews it next.`, "success");
          form.reset();
          await loadMoney();
        } else notice(withdrawMessage, userErrorMessage(result), "error");
      } catch (error) {
        notice(withdrawMessage, errorMessage(error), "error");
      }
    });
  });
  refresh.addEventListener("click", () => busy(refresh, loadMoney));

  await loadMoney();
  fill(
    main,
    h("h1", {}, "Creator"),
    h(
      "div",
      { class: "columns" },
      streamPanel,
      h("section", { class: "card", "aria-labelledby": "earn-title" }, h("h2", { id: "earn-title" }, "Earnings"), earnings, form, withdrawMessage),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "wd-title" },
      h("div", { class: "title-row" }, h("h2", { id: "wd-title" }, "Withdrawals"), refresh),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["Requested", "Amount", "Diamonds", "Status", "Settled"].map((t) => h("th", { scope: "col" }, t)))),
          withdrawals,
        ),
      ),
    ),
  );
  await loadStream();
  // Follow a pending withdrawal's status while this page is open.
  const timer = setInterval(async () => {
    if (document.visibilityState !== "visible") return;
    try {
      const stillPending = withdrawals.querySelector(".badge.pending");
      if (stillPending) await loadMoney();
    } catch {
      // shown on the next manual refresh
    }
  }, 3000);
  return () => clearInterval(timer);
}

function fact(label, value, testid) {
  return h("div", {}, h("dt", {}, label), h("dd", testid ? { "data-testid": testid } : {}, value));
}
