// Sign in: locally a picker of demo users (dev tokens); on AWS the user pool's email and
// password (SRP).

import { errorMessage } from "../messages.js";
import { busy, field, fill, h, notice } from "../ui.js";

const HOME = { viewer: "#/", creator: "#/creator", admin: "#/admin" };

export async function render({ session, main, config, go, params }) {
  const message = h("div");
  // Back where the sign-in started (a stream, the wallet), else the user's home page.
  const next = params.get("next");
  const back = (home) => go(next && next.startsWith("/") ? `#${next}` : home);
  if (config.mode === "cognito") {
    const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
    const password = h("input", {
      type: "password",
      name: "password",
      autocomplete: "current-password",
      required: true,
    });
    const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
    const form = h("form", { class: "card narrow" }, field("Email", email), field("Password", password), submit, message);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(submit, async () => {
        try {
          await session.signInWithPassword(email.value.trim(), password.value);
          back(session.user.admin ? "#/admin" : "#/");
        } catch (error) {
          notice(message, error.message || errorMessage(error), "error");
        }
      });
    });
    fill(main, h("h1", {}, "Sign in"), form);
    return;
  }

  if (!config.devTokensUrl) {
    fill(
      main,
      h("h1", {}, "Sign in"),
      h("p", {}, "This server hands out no dev tokens. Start it with ", h("code", {}, "make serve"), "."),
    );
    return;
  }
  const users = await session.demoUsers();
  const list = h(
    "ul",
    { class: "pickers" },
    users.map((user) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "picker",
            onclick: () => {
              session.signInAs(user);
              back(HOME[user.role] || "#/");
            },
          },
          h("strong", {}, user.name),
          h("span", { class: "muted" }, user.role),
        ),
      ),
    ),
  );
  fill(
    main,
    h("h1", {}, "Sign in"),
    h(
      "p",
      {},
      "Pick a demo user. Their dev token comes from this local server (",
      h("code", {}, "/dev/tokens"),
      "), which the deployed API does not have: there the app signs in to the Cognito user pool.",
    ),
    list,
    message,
  );
}
