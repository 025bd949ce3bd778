// Viewer: the streams that are live now, newest first (public: no sign-in needed).

import { act } from "../clicks.js";
import { LIVE_STREAMS } from "../documents.js";
import { agoTime, fill, h, plural } from "../ui.js";

const REFRESH_MS = 15_000;

export async function render({ api, main, signal, cleanup }) {
  const list = h("ul", { class: "streams" });
  const more = h("button", { type: "button", hidden: true }, "Show more");
  const refresh = h("button", { type: "button" }, "Refresh");
  const message = h("div");
  let after = null;

  async function load(reset) {
    if (reset) after = null;
    const data = await api.query(LIVE_STREAMS, { first: 12, after }, { signal });
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
          " since ",
          agoTime(node.startedAt),
          ` · ${plural(node.coinsReceived, "coin")} gifted`,
        ),
      ),
    );
    if (reset) fill(list, items);
    else list.append(...items);
    if (reset && !edges.length) fill(list, h("li", { class: "muted" }, "Nobody is live right now. Go live from the Creator page."));
    after = pageInfo.endCursor;
    more.hidden = !pageInfo.hasNextPage;
  }

  more.addEventListener("click", () => act(more, message, () => load(false)));
  refresh.addEventListener("click", () => act(refresh, message, () => load(true)));
  await load(true);
  fill(main, h("div", { class: "title-row" }, h("h1", {}, "Live now"), refresh), list, more, message);
  // New streams appear without a click; a page that is not shown stops polling.
  const timer = setInterval(() => document.visibilityState === "visible" && load(true).catch(() => {}), REFRESH_MS);
  cleanup(() => clearInterval(timer));
}
