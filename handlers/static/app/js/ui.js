// Small DOM helpers: no framework, so every page reads as plain JavaScript.

/** h("button", {class: "primary", onclick}, "Send") builds an element. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's content. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A labelled form field: <label for=id> and the control, for screen readers and clicks. */
export function field(label, control, hint) {
  control.id ||= `f-${Math.random().toString(36).slice(2, 9)}`;
  const hintEl = hint ? h("small", { id: `${control.id}-hint`, class: "hint" }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintEl);
}

let statusTimer;

/**
 * Tell the user something in the status bar (read out by screen readers). Errors and
 * `persist` stay until replaced or `unannounce`d; the rest go after 6 s.
 */
export function announce(message, kind = "info", { persist = false } = {}) {
  const bar = document.getElementById("status");
  clearTimeout(statusTimer);
  bar.className = `status ${kind}`;
  bar.dataset.kind = kind;
  bar.textContent = message;
  bar.hidden = false;
  if (kind !== "error" && !persist) statusTimer = setTimeout(() => (bar.hidden = true), 6000);
}

/** Hide the status bar if it still says a message of this kind. */
export function unannounce(kind) {
  const bar = document.getElementById("status");
  if (bar.dataset.kind === kind) bar.hidden = true;
}

/** The message for one form, next to it (role=alert for errors); "" clears it. */
export function notice(target, message, kind = "info", ...extra) {
  const role = kind === "error" ? "alert" : "status";
  fill(target, message ? h("p", { class: `notice ${kind}`, role }, message, ...extra) : null);
}

/** Disable a button while `work` runs, so one click is one request. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/**
 * Ask before something that cannot be undone: a modal <dialog> (focus stays inside, Escape
 * cancels). Resolves true when confirmed.
 */
export function confirmAction({ title, body, confirm, danger = false }) {
  return new Promise((resolve) => {
    const titleId = `d-${Math.random().toString(36).slice(2, 9)}`;
    const yes = h("button", { type: "submit", value: "yes", class: danger ? "danger-solid" : "primary" }, confirm);
    const no = h("button", { type: "submit", value: "no", formnovalidate: true }, "Cancel");
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": titleId },
      h("form", { method: "dialog" }, h("h2", { id: titleId }, title), h("p", {}, body), h("div", { class: "actions" }, no, yes)),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus(); // the safe choice is the default one
  });
}

export const number = (n) => new Intl.NumberFormat().format(n);
export const signed = (n) => (n > 0 ? `+${number(n)}` : n < 0 ? `−${number(-n)}` : "0");
export function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
export const plural = (n, one, many = `${one}s`) => `${number(n)} ${n === 1 ? one : many}`;

/** "just now", "5 min ago", "2 h ago", else the date: for lists that update themselves. */
export function ago(iso, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.max(1, Math.round(seconds / 60))} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return when(iso);
}

/** A <time> that `refreshTimes` keeps relative. */
export const agoTime = (iso) => h("time", { datetime: iso, title: when(iso), "data-ago": "" }, ago(iso));

export function refreshTimes(root) {
  const now = Date.now();
  for (const time of root.querySelectorAll("time[data-ago]")) time.textContent = ago(time.dateTime, now);
}

/** How long between two instants, in words: "1 h 5 min", "12 min", "40 s". */
export function duration(fromIso, toIso) {
  const seconds = Math.max(0, Math.round((Date.parse(toIso) - Date.parse(fromIso)) / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// Pictures of the catalog's gifts (img/gifts/); a gift added later gets the generic box.
const PICTURES = new Set([
  "rose",
  "panda",
  "love-bang",
  "rainbow-puke",
  "concert",
  "galaxy",
  "drama-queen",
  "interstellar",
  "lion",
  "universe",
]);

export function giftPicture(giftId, size = 32) {
  const name = PICTURES.has(giftId) ? giftId : "gift";
  return h("img", { class: "gift-pic", src: `img/gifts/${name}.svg`, alt: "", width: size, height: size });
}

/** Run `fn` when the page is left (the signal aborts), or now if it already was. */
export function onLeave(signal, fn) {
  if (signal.aborted) fn();
  else signal.addEventListener("abort", fn, { once: true });
}
