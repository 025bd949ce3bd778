// The app's start: read config.json, sign-in state, the header, and a hash router
// (#/, #/stream/<id>, #/wallet, #/creator, #/admin, #/signin) so any static host serves it.

import { Api } from "./api.js";
import { Session } from "./auth.js";
import { errorMessage } from "./messages.js";
import * as admin from "./pages/admin.js";
import * as creator from "./pages/creator.js";
import * as live from "./pages/live.js";
import * as signin from "./pages/signin.js";
import * as stream from "./pages/stream.js";
import * as wallet from "./pages/wallet.js";
import { announce, fill, h } from "./ui.js";

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
  api.onRetry = (error, attempt) => announce(`${errorMessage(error)} Retrying (${attempt})…`, "warn");
  const main = document.getElementById("main");
  let cleanup = null;

  const context = {
    api,
    session,
    main,
    config,
    go: (hash) => {
      if (location.hash === hash) route();
      else location.hash = hash;
    },
  };

  function header() {
    const user = session.user;
    document.getElementById("nav-admin").hidden = !user?.admin;
    const account = document.getElementById("account");
    if (!user) {
      fill(account, h("a", { class: "button", href: "#/signin" }, "Sign in"));
      return;
    }
    const signOut = h("button", { type: "button", class: "link" }, "Sign out");
    signOut.addEventListener("click", async () => {
      await session.signOut();
      api.reset();
      context.go("#/signin");
    });
    fill(account, h("span", {}, "Signed in as ", h("strong", {}, user.name), user.role ? ` (${user.role})` : ""), " ", signOut);
  }

  async function route() {
    const path = location.hash.replace(/^#/, "") || "/";
    for (const link of document.querySelectorAll("#nav a")) {
      const active = link.getAttribute("href") === `#${path}`;
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (cleanup) cleanup();
    cleanup = null;
    const match = ROUTES.map(([pattern, page, title]) => [path.match(pattern), page, title]).find(([m]) => m);
    if (!match) {
      fill(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "See who is live")));
      return;
    }
    const [found, page, title] = match;
    document.title = `${title} · LiveCoins`;
    fill(main, h("p", { class: "muted" }, "Loading…"));
    try {
      cleanup = (await page.render(context, ...found.slice(1).map(decodeURIComponent))) || null;
    } catch (error) {
      fill(main, h("h1", {}, title), h("p", { class: "notice error", role: "alert" }, errorMessage(error)));
    }
    main.focus({ preventScroll: true });
  }

  session.onChange(header);
  header();
  window.addEventListener("hashchange", route);
  await route();
}

start().catch((error) => {
  document.getElementById("main").textContent = `The app could not start: ${error.message}`;
});
