// Creator: going live; while live, a dashboard that follows the stream as gifts land (its
// feed, total and top gifters, and the diamonds they earn); when it ends, a summary; the
// payout account (its state at the processor, what is still due, the hosted onboarding); the
// earnings and withdrawals, each followed to its outcome.

import { Intent } from "../api.js";
import { act, unknownOutcome } from "../clicks.js";
import { CREATOR, END_STREAM, MY_STREAM, RANKING_BASIC, REQUEST_WITHDRAWAL, START_PAYOUT_ONBOARDING, START_STREAM, STREAM_SUMMARY } from "../documents.js";
import { StreamFeed, showCombos } from "../feed.js";
import { payoutStatusLabel, requirementLabel, statusLabel, userErrorMessage } from "../messages.js";
import { agoTime, confirmAction, duration, field, fill, h, notice, number, plural, refreshTimes, when } from "../ui.js";

const DASHBOARD_LINES = 8;
const FOLLOW_MS = 3000; // a pending withdrawal's status, while this page is shown

// What each payout account state means for the creator, and the button that moves it on.
const PAYOUT_TEXT = {
  NOT_CONNECTED: ["Withdrawals are paid to your own payout account. Stripe collects your identity, bank and tax details.", "Set up payouts"],
  ONBOARDING: ["Setup is not finished: Stripe still needs the details below (or is checking them).", "Continue setup"],
  ENABLED: ["Payouts are enabled: each withdrawal is sent to your payout account once an admin approves it.", "Update payout details"],
  RESTRICTED: ["Stripe has disabled your payouts until the details below are fixed. Withdrawals wait meanwhile.", "Fix payout details"],
};

export async function render({ api, session, main, signal, cleanup, signInHref, params, go }) {
  if (!session.user) {
    fill(main, h("h1", {}, "Creator"), h("p", {}, h("a", { href: signInHref() }, "Sign in"), " to go live and withdraw."));
    return;
  }
  const streamPanel = h("section", { class: "card", "aria-labelledby": "stream-title" });
  const earnings = h("dl", { class: "facts" });
  const withdrawals = h("tbody");
  const withdrawMessage = h("div");
  const payouts = h("div", { class: "payouts", "data-testid": "payouts" });
  const payoutsMessage = h("div");
  const streamMessage = h("div");
  const withdrawForm = h("div");
  let me = null;
  let stopDashboard = () => {};
  let dashboardFeed = null;
  let requested = null; // the withdrawal asked for here, followed until it is settled
  cleanup(() => stopDashboard());

  async function loadMoney() {
    me = (await api.query(CREATOR, {}, { signal })).me;
    const e = me.earnings;
    fill(
      earnings,
      fact("Diamonds", number(e.diamonds), "diamonds"),
      fact("Worth", e.cashValue.formatted),
      fact("Available to withdraw", plural(e.availableDiamonds, "diamond"), "available"),
      e.pendingDiamonds ? fact("On hold", `${plural(e.pendingDiamonds, "diamond")}, available from ${when(e.nextAvailableAt)}`, "on-hold") : null,
      fact("You can still request today", e.remainingToday.formatted),
      fact("Smallest withdrawal", e.minimumWithdrawal.formatted),
    );
    const rows = me.withdrawals.edges.map(({ node }) =>
      h(
        "tr",
        { "data-withdrawal": node.id },
        h("td", { "data-label": "Requested" }, when(node.createdAt)),
        h("td", { class: "num", "data-label": "Amount" }, node.amount.formatted),
        h("td", { class: "num", "data-label": "Diamonds" }, number(node.diamonds)),
        h(
          "td",
          { "data-label": "Status" },
          h("span", { class: `badge ${node.status.toLowerCase()}` }, statusLabel(node.status)),
          node.returnedDiamonds ? h("span", { class: "muted" }, ` (reversed: ${plural(node.returnedDiamonds, "diamond")} back)`) : null,
        ),
        h("td", { "data-label": "Settled" }, when(node.settledAt)),
      ),
    );
    fill(withdrawals, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No withdrawals yet.")));
    showPayouts();
    // The request's message follows its outcome instead of staying "an admin reviews it next".
    const settled = requested && me.withdrawals.edges.find(({ node }) => node.id === requested.id && node.status !== "PENDING");
    if (settled) {
      const outcome = settled.node.status === "PAID" ? "was paid" : "was rejected: its diamonds are back in your earnings";
      notice(withdrawMessage, `Your ${settled.node.amount.formatted} withdrawal ${outcome}.`, settled.node.status === "PAID" ? "success" : "info");
      requested = null;
    }
  }

  async function loadStream() {
    stopDashboard();
    const { edges } = (await api.query(MY_STREAM, {}, { signal })).liveStreams;
    const mine = edges.map((e) => e.node).find((s) => s.creator.id === me.id);
    if (mine) showDashboard(mine);
    else showGoLive();
  }

  function showGoLive() {
    const title = h("h2", { id: "stream-title" }, "Your stream");
    if (!me.isAdult) {
      fill(streamPanel, title, h("p", { class: "muted" }, "Only adults (18+) can go live."));
      return;
    }
    const name = h("input", { name: "title", maxlength: 100, required: true, placeholder: "Friday night" });
    const start = h("button", { type: "submit", class: "primary" }, "Go live");
    const form = h("form", {}, field("Title", name, "1 to 100 characters"), start);
    const intent = new Intent("live");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const base = { title: name.value };
      const input = { ...base, idempotencyKey: intent.key(base) };
      act(start, streamMessage, async ({ onRetry }) => {
        let result;
        try {
          result = (await api.mutate(START_STREAM, { input }, { onRetry })).startLiveStream;
        } catch (error) {
          return notice(streamMessage, unknownOutcome(error, "that you went live", "press Refresh to see whether you are"), "error");
        }
        intent.settle();
        if (result.__typename !== "LiveStreamStarted") return notice(streamMessage, userErrorMessage(result), "error");
        await loadStream();
        notice(streamMessage, "You are live.", "success");
      });
    });
    fill(streamPanel, title, form, streamMessage);
  }

  function showDashboard(s) {
    if (signal.aborted) return; // left while reading: its feed would never be stopped
    const total = h("p", { class: "big", "data-testid": "stream-total" });
    const top = h("ol", { class: "ranking", "aria-label": "Top gifters" });
    const list = h("ul", { class: "feed", "aria-live": "polite", "aria-relevant": "additions", "aria-label": "Recent gifts" });
    const connection = h("span", { class: "connection", "data-state": "connecting" }, "Connecting…");
    const end = h("button", { type: "button", class: "danger" }, "End stream");
    list.append(h("li", { class: "muted empty" }, "Gifts appear here as your viewers send them."));

    // The summary replaces the dashboard once, whichever notices the end first: the answer
    // to End stream, the feed completing, or a read that says ENDED.
    let finished = false;
    const finish = async () => {
      if (finished) return;
      finished = true;
      stopDashboard();
      await showSummary(s.id);
    };
    const showTotals = (fresh) => {
      if (fresh.status === "ENDED") {
        finish().catch(() => {}); // ended elsewhere: another tab, an end whose answer was lost
        return;
      }
      total.textContent = plural(fresh.coinsReceived, "coin");
      fill(
        top,
        fresh.topGifters.slice(0, 3).map((r) => h("li", {}, h("span", { class: "rank" }, `#${r.rank}`), " ", h("strong", {}, r.user.displayName), h("span", { class: "amount" }, plural(r.coins, "coin")))),
      );
    };
    // After gifts land: the totals, and the diamonds they earned (at most once a second).
    let timer = null;
    const refresh = () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        try {
          showTotals((await api.query(RANKING_BASIC, { id: s.id }, { signal })).liveStream);
          await loadMoney();
        } catch {
          // the next gift reads them again
        }
      }, 1000);
    };
    const feed = new StreamFeed(api, s.id, {
      onChange: () => showCombos(list, feed.list(), DASHBOARD_LINES),
      onTotals: showTotals,
      onGift: refresh,
      onEnd: () => finish().catch(() => {}),
      onSocket: (state) => {
        connection.dataset.state = state === "connected" ? "live" : state === "closed" ? "reconnecting" : state;
        connection.textContent = state === "connected" ? "● Connected" : state === "closed" ? "Reconnecting…" : "Connecting…";
      },
    });
    const stopFeed = feed.start();
    feed.catchUp(0); // the totals and recent gifts now, without waiting for the socket
    const clock = setInterval(() => refreshTimes(streamPanel), 15_000);
    dashboardFeed = feed;
    stopDashboard = () => {
      stopFeed();
      clearTimeout(timer);
      clearInterval(clock);
      dashboardFeed = null;
      stopDashboard = () => {};
    };

    const intent = new Intent("end");
    end.addEventListener("click", async () => {
      const sure = await confirmAction({ title: "End your stream?", body: "Viewers can't send gifts once it has ended.", confirm: "End stream", danger: true });
      if (!sure) return;
      const input = { streamId: s.id, idempotencyKey: intent.key({ streamId: s.id }) };
      act(end, streamMessage, async ({ onRetry }) => {
        let result;
        try {
          result = (await api.mutate(END_STREAM, { input }, { onRetry })).endLiveStream;
        } catch (error) {
          return notice(streamMessage, unknownOutcome(error, "that your stream ended", "press Refresh to see whether it has"), "error");
        }
        intent.settle();
        if (result.__typename !== "LiveStreamEnded") return notice(streamMessage, userErrorMessage(result), "error");
        await finish();
      });
    });

    fill(
      streamPanel,
      h("div", { class: "title-row" }, h("h2", { id: "stream-title" }, "Your stream"), connection),
      h("p", {}, h("span", { class: "badge live" }, "LIVE"), " ", h("a", { href: `#/stream/${encodeURIComponent(s.id)}` }, s.title), " ", h("span", { class: "muted" }, "started ", agoTime(s.startedAt))),
      h("div", { class: "dashboard" }, h("div", {}, h("h3", {}, "Gifted so far"), total, h("h3", {}, "Top gifters"), top), h("div", {}, h("h3", {}, "Recent gifts"), list)),
      end,
      streamMessage,
    );
    total.textContent = "…"; // until the feed's first catch-up
  }

  async function showSummary(streamId) {
    const [{ liveStream: s }] = await Promise.all([api.query(STREAM_SUMMARY, { id: streamId }, { signal }), loadMoney()]);
    const again = h("button", { type: "button", class: "primary" }, "Go live again");
    again.addEventListener("click", showGoLive);
    const held = me.earnings.pendingDiamonds
      ? `${plural(me.earnings.pendingDiamonds, "diamond")} of your earnings are on hold until ${when(me.earnings.nextAvailableAt)}.`
      : "Your diamonds from it are available to withdraw.";
    fill(
      streamPanel,
      h("h2", { id: "stream-title" }, "Your stream has ended."),
      h("p", {}, h("strong", {}, s.title)),
      h(
        "dl",
        { class: "facts" },
        fact("Lasted", duration(s.startedAt, s.endedAt)),
        fact("Coins gifted", number(s.coinsReceived), "summary-coins"),
        fact("Top gifter", s.topGifters[0] ? `${s.topGifters[0].user.displayName} (${plural(s.topGifters[0].coins, "coin")})` : "nobody yet"),
      ),
      h("p", { class: "muted" }, held),
      again,
      streamMessage,
    );
  }

  // The payout account as the processor has it, with the button to its hosted onboarding.
  function showPayouts() {
    const account = me.payoutAccount;
    if (!me.isAdult) {
      fill(payouts, h("h3", {}, "Payouts"), h("p", { class: "muted" }, "Only adults (18+) can receive payouts."));
      return;
    }
    const [text, action] = PAYOUT_TEXT[account.status] || PAYOUT_TEXT.NOT_CONNECTED;
    const kind = { ENABLED: "paid", RESTRICTED: "rejected" }[account.status] || "pending";
    const start = h("button", { type: "button", class: account.status === "ENABLED" ? "" : "primary" }, action);
    start.addEventListener("click", () => startOnboarding(start));
    fill(
      payouts,
      h("div", { class: "title-row" }, h("h3", {}, "Payouts"), h("span", { class: `badge ${kind}`, "data-testid": "payout-status" }, payoutStatusLabel(account.status))),
      h("p", { class: "muted" }, text),
      account.requirementsDue.length
        ? h("ul", { class: "due", "aria-label": "Still due" }, account.requirementsDue.map((name) => h("li", { title: name }, requirementLabel(name))))
        : null,
      start,
      payoutsMessage,
    );
  }

  // Where the processor's hosted onboarding sends the creator back: this page (an origin the
  // deployment allows, README "Paying creators"); the link is single-use, so coming back
  // through refreshUrl asks for a new one at once.
  async function startOnboarding(button) {
    const here = `${location.origin}${location.pathname}`;
    const input = { returnUrl: `${here}#/creator?payouts=return`, refreshUrl: `${here}#/creator?payouts=refresh` };
    return act(button, payoutsMessage, async ({ onRetry }) => {
      const result = (await api.mutate(START_PAYOUT_ONBOARDING, { input }, { onRetry })).startPayoutOnboarding;
      if (result.__typename !== "PayoutOnboardingStarted") return notice(payoutsMessage, userErrorMessage(result), "error");
      const target = new URL(result.url, location.href);
      if (target.origin === location.origin && target.pathname === location.pathname) {
        go(target.hash); // nothing to fill in (the local sandbox): straight back here
      } else {
        notice(payoutsMessage, "Taking you to Stripe…", "info");
        location.assign(result.url);
      }
    });
  }

  function showWithdrawForm() {
    if (!me.isAdult) {
      fill(withdrawForm, h("p", { class: "muted" }, "Only adults (18+) can withdraw."));
      return;
    }
    const diamonds = h("input", { type: "number", name: "diamonds", min: 1, step: 1, required: true, inputmode: "numeric" });
    const request = h("button", { type: "submit", class: "primary" }, "Request withdrawal");
    const form = h("form", {}, field("Diamonds to withdraw", diamonds, "A diamond is worth half a cent."), request);
    const intent = new Intent("wd");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const base = { diamonds: Number(diamonds.value) };
      const input = { ...base, idempotencyKey: intent.key(base) };
      act(request, withdrawMessage, async ({ onRetry }) => {
        let result;
        try {
          result = (await api.mutate(REQUEST_WITHDRAWAL, { input }, { onRetry })).requestWithdrawal;
        } catch (error) {
          notice(withdrawMessage, unknownOutcome(error, "your request", "the withdrawals below show whether it went through"), "error");
          return loadMoney().catch(() => {});
        }
        intent.settle();
        if (result.__typename !== "WithdrawalRequested") return notice(withdrawMessage, userErrorMessage(result), "error");
        requested = result.withdrawal;
        notice(withdrawMessage, `Requested ${result.withdrawal.amount.formatted}: an admin reviews it next.`, "success");
        form.reset();
        await loadMoney();
      });
    });
    fill(withdrawForm, form);
  }

  const refresh = h("button", { type: "button" }, "Refresh");
  const refreshMessage = h("div");
  // Refresh reads everything again: the earnings, the withdrawals and the stream panel.
  refresh.addEventListener("click", () =>
    act(refresh, refreshMessage, async () => {
      await loadMoney();
      if (dashboardFeed) dashboardFeed.resume();
      else if (!streamPanel.querySelector(".facts")) await loadStream();
    }),
  );

  const back = params?.get("payouts");
  if (back === "refresh") {
    // the onboarding link expired or was used: a new one, at once
    const button = h("button", { type: "button" });
    await startOnboarding(button);
  }
  await loadMoney();
  if (back === "return") {
    const status = me.payoutAccount.status;
    notice(
      payoutsMessage,
      status === "ENABLED" ? "Your payouts are enabled." : "Welcome back. Stripe may still be checking your details: this page shows where it stands.",
      status === "ENABLED" ? "success" : "info",
    );
  }
  showWithdrawForm();
  await loadStream();
  fill(
    main,
    h("h1", {}, "Creator"),
    me.restricted ? h("p", { class: "notice error", role: "alert" }, "Your account is restricted after a disputed payment: withdrawals wait until an admin clears it.") : null,
    h(
      "div",
      { class: "columns" },
      streamPanel,
      h("section", { class: "card", "aria-labelledby": "earn-title" }, h("h2", { id: "earn-title" }, "Earnings"), earnings, payouts, withdrawForm, withdrawMessage),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "wd-title" },
      h("div", { class: "title-row" }, h("h2", { id: "wd-title" }, "Withdrawals"), refresh),
      refreshMessage,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "stack" },
          h("thead", {}, h("tr", {}, ["Requested", "Amount", "Diamonds", "Status", "Settled"].map((t) => h("th", { scope: "col" }, t)))),
          withdrawals,
        ),
      ),
    ),
  );
  // Follow a pending withdrawal's status while this page is shown.
  const timer = setInterval(async () => {
    if (document.visibilityState !== "visible" || !withdrawals.querySelector(".badge.pending")) return;
    try {
      await loadMoney();
    } catch {
      // shown on the next refresh
    }
  }, FOLLOW_MS);
  cleanup(() => clearInterval(timer));
}

function fact(label, value, testid) {
  return h("div", {}, h("dt", {}, label), h("dd", testid ? { "data-testid": testid } : {}, value));
}
