// A stream's gifts as a page shows them: the live feed kept whole across dropped connections,
// merged by gift id (never twice), newest first, grouped into combos, capped.
//
// Following: giftFeed(streamId, after: the newest gift shown). The server first sends what
// landed after it (gifts that committed late included), then the live ones. On every
// reconnection the page subscribes again after its newest gift, so the gap is filled by the
// server, not guessed. It also reads the stream once per (re)connection (CATCH_UP: the totals,
// the ranking and the newest page of gifts, which the backfill's cap of 100 gifts could leave
// out after a long absence); with nothing to be `after` yet it reads again SETTLE_MS later, as
// a gift landing while the server sets the subscription up could miss the first read.
//
// A stream whose giftFeed is full answers FEED_FULL (never to its creator): the page follows
// streamDigest instead, at most one message a second: its totals and ranking (onTotals) and
// its largest gifts (highlights, shown like any gift). A digest whose sequence is not newer
// than the last one's is a duplicate and dropped; a gap needs nothing (each carries the
// totals).
//
// The two documents are here, beside their only user: GIFT_FEED (js/documents.js) has no
// `after`, and streamDigest is followed nowhere else.

import { RECONNECT_MS } from "./api.js";
import { CATCH_UP, GIFT_FEED } from "./documents.js";
import { agoTime, giftPicture, h, plural } from "./ui.js";

const GIFT_LINE = GIFT_FEED.slice(GIFT_FEED.indexOf("fragment GiftLine"));
export const GIFT_FEED_AFTER = `subscription GiftFeedAfter($streamId: ID!, $after: ID) {
  giftFeed(streamId: $streamId, after: $after) { ...GiftLine }
}
${GIFT_LINE}`;
export const STREAM_DIGEST = `subscription StreamDigest($streamId: ID!) {
  streamDigest(streamId: $streamId) {
    sequence status coinsReceived
    topGifters { rank coins user { id displayName } }
    highlights { ...GiftLine }
  }
}
${GIFT_LINE}`;

export const FEED_LINES = 50; // lines (combos) shown: the feed never grows without limit
const KEPT = 200; // gifts kept to build them
const CATCH_UP_PAGES = 3; // 60 gifts: more than the lines a gap can show
export const SETTLE_MS = 1500;
export const COMBO_GAP_MS = 30_000; // a gift more than this after the previous one starts a new line

const newestFirst = (a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0); // ids are ULIDs

export class StreamFeed {
  /**
   * handlers: onChange() when the gifts changed; onTotals(stream) with the stream's status,
   * coinsReceived and topGifters after each catch-up and digest; onGift(transfer) for each live
   * gift; onSocket(state, closes) as in Api.subscribe; onEnd() when the stream ends;
   * onError(error) when the feed is refused; onMode(mode) when the page follows the digest.
   */
  constructor(api, streamId, handlers) {
    this.api = api;
    this.streamId = streamId;
    this.on = { onChange() {}, onTotals() {}, onGift() {}, onSocket() {}, onEnd() {}, onError() {}, onMode() {}, ...handlers };
    this.gifts = new Map();
    this.timers = new Set();
    this.controller = new AbortController();
    this.mode = "feed"; // or "digest", once the stream's giftFeed is full
    this.generation = 0; // of the subscription: a replaced one's late callbacks are ignored
    this.connections = 0;
    this.sequence = 0; // of the last digest shown
    this.unsubscribe = () => {};
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
    this.follow();
    return () => {
      this.generation++;
      this.unsubscribe();
      this.controller.abort();
      for (const timer of this.timers) clearTimeout(timer);
    };
  }

  /** (Re)subscribe: to giftFeed after the newest gift shown, or to the stream's digest. */
  follow() {
    this.unsubscribe();
    const generation = ++this.generation;
    const current = (fn) => (...args) => (generation === this.generation ? fn(...args) : undefined);
    const digest = this.mode === "digest";
    this.after = digest ? null : this.newest();
    this.unsubscribe = this.api.subscribe(
      digest ? STREAM_DIGEST : GIFT_FEED_AFTER,
      digest ? { streamId: this.streamId } : { streamId: this.streamId, after: this.after },
      {
        onData: current((data) => (digest ? this.digest(data.streamDigest) : this.gift(data.giftFeed))),
        onEnd: current(() => this.on.onEnd()),
        onError: current((error) => {
          if (!digest && error?.extensions?.code === "FEED_FULL") {
            this.mode = "digest";
            this.on.onMode("digest");
            this.follow();
            return;
          }
          this.on.onError(error);
        }),
        onSocket: current((state, closes) => {
          this.on.onSocket(state, closes);
          if (state === "connected") this.resume();
        }),
      },
    );
  }

  gift(transfer) {
    this.add([transfer]);
    this.on.onGift(transfer);
  }

  digest(message) {
    if (message.sequence <= this.sequence) return; // a duplicate: delivery is at least once
    this.sequence = message.sequence;
    this.on.onTotals(message);
    this.add(message.highlights);
  }

  /** Connected (again): the server sends the gifts after the newest one shown (a new
   * subscription after it); the totals are read again. */
  resume() {
    this.connections++;
    if (this.connections > 1 && this.mode === "feed") this.follow();
    this.catchUp(0);
    if (this.mode === "feed" && !this.after) this.later(SETTLE_MS, () => this.catchUp(0));
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
