// Viewer: the streams that are live now, newest first (public: no sign-in needed).

import { LIVE_STREAMS } from "../documents.js";
import { busy, fill, h, number, when } from "../ui.js";

export async function render({ api, main }) {
  const list = h("ul", { class: "streams" });
  const more = h("button", { type: "button", hidden: true }, "Show more");
  const refresh = h("button", { type: "button" }, "Refresh");
  let after = null;

  async function load(reset) {
    if (reset) after = null;
    const data = await api.query(LIVE_STREAMS, { first: 12, after });
    const { edges, pageInfo } = data.liveStreams;
    const items = edges.map(({ node }) =>
      h(
        "li",
        { class: "card stream-card" },
        h("h2", {}, h("a", { href: `#/stream/${encodeURIComponent(node.id)}` }, node.title)),
        h("p", {}, "by ", h("strong", {}, node.creator.displayName)),
        h(
          "p",
          { class: "muted" },
          h("span", { class: "badge live" }, "LIVE"),
          ` since ${when(node.startedAt)} · ${number(node.coinsReceived)} coins gifted`,
        ),
      ),
    );
    if (reset) fill(list, items);
    else list.append(...items);
    if (reset && !edges.length) fill(list, h("li", { class: "muted" }, "Nobody is live right now. Go live from the Creator page."));
    after = pageInfo.endCursor;
    more.hidden = !pageInfo.hasNextPage;
  }

  more.addEventListener("click", () => busy(more, () => load(false)));
  refresh.addEventListener("click", () => busy(refresh, () => load(true)));
  fill(main, h("div", { class: "title-row" }, h("h1", {}, "Live now"), refresh), list, more);
  await load(true);
  // New streams appear without a click; a page that is not shown stops polling.
  const timer = setInterval(() => document.visibilityState === "visible" && load(true).catch(() => {}), 15000);
  return () => clearInterval(timer);
}
