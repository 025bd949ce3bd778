// A stream's gifts as a page shows them: the live feed (giftFeed) kept whole across dropped
// connections, merged by gift id (never twice), newest first, grouped into combos, capped.
//
// Catching up: every time the feed's socket is acknowledged (the first time, and after each
// drop), the page reads the stream again: its totals and the gifts newer than the newest one
// it has (CATCH_UP, a page of 20 at a time until it meets a gift it already has, at most
// CATCH_UP_PAGES). It reads once at once and once SETTLE_MS later: graphql-transport-ws does
// not acknowledge a subscription, so a gift landing while the server is still setting the
// subscription up could miss both the first read and the feed; the second read has it.
//
// With giftFeed(after:) (in the contract, not in this API yet) the server does this itself,
// gifts that commit late included: `resume` becomes "subscribe again with after: newest()"
// and both reads go away. A stream that refuses the feed with FEED_FULL is then followed with
// streamDigest instead (see docs/app.md); today the refusal is shown as the feed's error.

import { RECONNECT_MS } from "./api.js";
import { CATCH_UP, GIFT_FEED } from "./documents.js";
import { agoTime, giftPicture, h, plural } from "./ui.js";

export const FEED_LINES = 50; // lines (combos) shown: the feed never grows without limit
const KEPT = 200; // gifts kept to build them
const CATCH_UP_PAGES = 3; // 60 gifts: more than the lines a gap can show
export const SETTLE_MS = 1500;
export const COMBO_GAP_MS = 30_000; // a gift more than this after the previous one starts a new line

const newestFirst = (a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0); // ids are ULIDs

export class StreamFeed {
  /**
   * handlers: onChange() when the gifts changed; onTotals(stream) with the stream's status,
   * coinsReceived and topGifters after each catch-up; onGift(transfer) for each live gift;
   * onSocket(state, closes) as in Api.subscribe; onEnd() when the stream ends; onError(error)
   * when the feed is refused.
   */
  constructor(api, streamId, handlers) {
    this.api = api;
    this.streamId = streamId;
    this.on = { onChange() {}, onTotals() {}, onGift() {}, onSocket() {}, onEnd() {}, onError() {}, ...handlers };
    this.gifts = new Map();
    this.timers = new Set();
    this.controller = new AbortController();
  }

  /** Merge gifts in any order, any number of times; true when one of them was new. */
  add(transfers) {
    let added = false;
    for (const t of transfers) {
      if (this.gifts.has(t.id)) continue;
      this.gifts.set(t.id, t);
      added = true;
    }
    if (!added) return false;
    if (this.gifts.size > KEPT) this.gifts = new Map(this.list().slice(0, KEPT).map((t) => [t.id, t]));
    this.on.onChange();
    return true;
  }

  list() {
    return [...this.gifts.values()].sort(newestFirst);
  }

  newest() {
    return this.list()[0]?.id ?? null;
  }

  /** Follow the stream live; returns the function that stops (every timer and read with it). */
  start() {
    const unsubscribe = this.api.subscribe(
      GIFT_FEED,
      { streamId: this.streamId },
      {
        onData: (data) => {
          this.add([data.giftFeed]);
          this.on.onGift(data.giftFeed);
        },
        onEnd: () => this.on.onEnd(),
        onError: (error) => this.on.onError(error),
        onSocket: (state, closes) => {
          this.on.onSocket(state, closes);
          if (state === "connected") this.resume();
        },
      },
    );
    return () => {
      unsubscribe();
      this.controller.abort();
      for (const timer of this.timers) clearTimeout(timer);
    };
  }

  /** Connected (again): fetch what may have landed while the feed was not listening. */
  resume() {
    this.catchUp(0);
    this.later(SETTLE_MS, () => this.catchUp(0));
  }

  later(ms, fn) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  async catchUp(failures) {
    const known = new Set(this.gifts.keys());
    let after = null;
    try {
      for (let page = 0; page < CATCH_UP_PAGES; page++) {
        const { liveStream } = await this.api.query(CATCH_UP, { id: this.streamId, after }, { signal: this.controller.signal });
        if (!liveStream) return;
        if (page === 0) this.on.onTotals(liveStream);
        const edges = liveStream.gifts.edges;
        this.add(edges.map((e) => e.node));
        if (!known.size || !liveStream.gifts.pageInfo.hasNextPage || edges.some((e) => known.has(e.node.id))) return;
        after = edges.at(-1).cursor;
      }
    } catch (error) {
      if (this.controller.signal.aborted) return;
      // offline or the server is restarting: try again, as the socket does
      this.later(RECONNECT_MS[Math.min(failures, RECONNECT_MS.length - 1)], () => this.catchUp(failures + 1));
    }
  }
}

/**
 * Combos: consecutive gifts of one sender and one gift, each within COMBO_GAP_MS of the
 * next, are one line ("Vic sent Rose ×10"). Takes gifts newest first; keyed by the oldest
 * gift of the line, so a line that grows keeps its element.
 */
export function combos(gifts) {
  const lines = [];
  for (const t of gifts) {
    const line = lines.at(-1);
    const joins =
      line &&
      line.sender.id === t.sender.id &&
      line.gift.id === t.gift.id &&
      Date.parse(line.since) - Date.parse(t.createdAt) <= COMBO_GAP_MS;
    if (joins) {
      line.quantity += t.quantity;
      line.coins += t.coins;
      line.since = t.createdAt;
      line.key = t.id;
      line.ids.push(t.id);
    } else {
      lines.push({ key: t.id, ids: [t.id], sender: t.sender, gift: t.gift, quantity: t.quantity, coins: t.coins, latest: t.createdAt, since: t.createdAt });
    }
  }
  return lines;
}

/**
 * Show the first `limit` combos in `list` (a <ul>), reusing the elements of lines already
 * shown: a screen reader announces new lines (aria-relevant="additions"), not the whole feed.
 */
export function showCombos(list, gifts, limit = FEED_LINES) {
  const lines = combos(gifts).slice(0, limit);
  const shown = new Map([...list.querySelectorAll(":scope > li[data-key]")].map((li) => [li.dataset.key, li]));
  list.querySelector(":scope > .empty")?.remove();
  lines.forEach((line, i) => {
    const old = shown.get(line.key);
    shown.delete(line.key);
    const li = comboLine(line);
    if (old && old.dataset.gifts === li.dataset.gifts) {
      old.querySelector("time").replaceWith(agoTime(line.latest)); // only the time moved on
      placeAt(list, old, i);
    } else if (old) {
      old.replaceChildren(...li.childNodes);
      old.dataset.gifts = li.dataset.gifts;
      placeAt(list, old, i);
    } else placeAt(list, li, i);
  });
  for (const li of shown.values()) li.remove();
}

function placeAt(list, element, index) {
  if (list.children[index] !== element) list.insertBefore(element, list.children[index] || null);
}

function comboLine(line) {
  return h(
    "li",
    { "data-key": line.key, "data-gifts": line.ids.join(" ") },
    giftPicture(line.gift.id, 28),
    h("span", { class: "who" }, h("strong", {}, line.sender.displayName), ` sent ${line.gift.name} `, h("span", { class: "combo" }, `×${line.quantity}`)),
    h("span", { class: "amount" }, plural(line.coins, "coin")),
    agoTime(line.latest),
  );
}
