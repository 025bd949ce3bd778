// The app's start: read config.json, sign-in state, the header, and a hash router
// (#/, #/stream/<id>, #/wallet, #/creator, #/admin, #/signin?next=<path>) so any static host
// serves it.
//
// Each route renders into its own element with its own AbortSignal. A newer route aborts the
// older one at once: its queries stop, the cleanups it registered (timers, the gift feed) run,
// and whatever it still renders lands in an element that is no longer on the page. So a slow
// page never paints over a quick one, and nothing of a left page keeps running.

import { Api } from "./api.js";
import { Session } from "./auth.js";
import { errorMessage } from "./messages.js";
import * as admin from "./pages/admin.js";
import * as creator from "./pages/creator.js";
import * as live from "./pages/live.js";
import * as signin from "./pages/signin.js";
import * as stream from "./pages/stream.js";
import * as wallet from "./pages/wallet.js";
import { announce, fill, h, onLeave, unannounce } from "./ui.js";

const ROUTES = [
  [/^\/$/, live, "Live now"],
  [/^\/stream\/([^/]+)$/, stream, "Stream"],
  [/^\/wallet$/, wallet, "Wallet"],
  [/^\/creator$/, creator, "Creator"],
  [/^\/admin$/, admin, "Admin"],
  [/^\/signin$/, signin, "Sign in"],
];

async function start() {
  const config = await (await fetch("config.json", { cache: "no-cache" })).json();
  // URLs in config.json may be relative to the app (the local server's are).
  for (const name of ["graphqlUrl", "publicGraphqlUrl", "devTokensUrl"]) {
    if (config[name]) config[name] = new URL(config[name], location.href).href;
  }
  config.publicGraphqlUrl ||= config.graphqlUrl;
  if (config.mode === "local") document.getElementById("graphiql-link").href = config.graphqlUrl;
  else document.getElementById("graphiql-link").remove();

  const session = new Session(config);
  const api = new Api(config, () => session.token());
  const main = document.getElementById("main");
  let current = null; // the route on screen: {controller}

  const context = {
    api,
    session,
    config,
    go: (hash) => {
      if (location.hash === hash) route();
      else location.hash = hash;
    },
    /** The sign-in route that comes back to `path` (default: the current one). */
    signInHref: (path = currentPath()) => (path === "/signin" ? "#/signin" : `#/signin?next=${encodeURIComponent(path)}`),
  };

  // A token the API refuses is signed out here, so the header says so and offers sign-in.
  api.onUnauthenticated = () => {
    if (!session.user) return;
    session.signOut();
    announce("Your sign-in has expired. Sign in again to continue.", "error");
  };

  function currentPath() {
    return location.hash.replace(/^#/, "").split("?")[0] || "/";
  }

  function header() {
    const user = session.user;
    document.getElementById("nav-admin").hidden = !user?.admin;
    const account = document.getElementById("account");
    if (!user) {
      fill(account, h("a", { class: "button", href: context.signInHref() }, "Sign in"));
      return;
    }
    const signOut = h("button", { type: "button", class: "link" }, "Sign out");
    signOut.addEventListener("click", async () => {
      await session.signOut();
      context.go("#/signin");
    });
    fill(account, h("span", {}, "Signed in as ", h("strong", {}, user.name), user.role ? ` (${user.role})` : ""), " ", signOut);
  }

  async function route() {
    const [path, search] = [currentPath(), location.hash.split("?")[1] || ""];
    for (const link of document.querySelectorAll("#nav a")) {
      const active = link.getAttribute("href") === `#${path}`;
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    current?.controller.abort();
    const controller = new AbortController();
    const mine = (current = { controller });
    header(); // its sign-in link comes back here
    const root = h("div", { class: "page" });
    fill(main, root);

    const match = ROUTES.map(([pattern, page, title]) => [path.match(pattern), page, title]).find(([m]) => m);
    if (!match) {
      document.title = "Not found · LiveCoins";
      fill(root, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "See who is live")));
      main.focus({ preventScroll: true });
      return;
    }
    const [found, page, title] = match;
    document.title = `${title} · LiveCoins`;
    fill(root, h("p", { class: "muted" }, "Loading…"));
    const pageContext = {
      ...context,
      main: root,
      params: new URLSearchParams(search),
      signal: controller.signal,
      /** Run fn when this page is left: timers, subscriptions. */
      cleanup: (fn) => onLeave(controller.signal, fn),
      /** A page's own title, once it knows it (a stream's). */
      setTitle: (text) => mine === current && (document.title = `${text} · LiveCoins`),
    };
    try {
      const cleanup = await page.render(pageContext, ...found.slice(1).map(decodeURIComponent));
      if (cleanup) pageContext.cleanup(cleanup);
    } catch (error) {
      if (mine !== current) return; // left while loading: its aborted queries end here
      fill(root, h("h1", {}, title), h("p", { class: "notice error", role: "alert" }, errorMessage(error)));
    }
    if (mine === current) main.focus({ preventScroll: true });
  }

  // Signing in or out here or in another tab: the header, the feed's token and the page follow.
  let signedInAs = session.user?.sub;
  session.onChange((user) => {
    header();
    if (user?.sub === signedInAs) return;
    signedInAs = user?.sub;
    api.reset();
    if (currentPath() !== "/signin") route();
  });

  const offline = () => announce("You are offline. Gifts and payments wait until the connection is back.", "warn", { persist: true });
  window.addEventListener("offline", offline);
  window.addEventListener("online", () => {
    unannounce("warn");
    announce("Back online.", "info");
  });
  if (!navigator.onLine) offline();

  window.addEventListener("hashchange", route);
  await route();
}

start().catch((error) => {
  document.getElementById("main").textContent = `The app could not start: ${error.message}`;
});
