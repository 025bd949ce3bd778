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

/** Tell the user something: shown in the status bar and read out by screen readers. */
export function announce(message, kind = "info") {
  const bar = document.getElementById("status");
  clearTimeout(statusTimer);
  bar.className = `status ${kind}`;
  bar.textContent = message;
  bar.hidden = false;
  if (kind !== "error") statusTimer = setTimeout(() => (bar.hidden = true), 6000);
}

/** The message for one form, next to it (role=alert for errors). */
export function notice(target, message, kind = "info") {
  fill(target, message ? h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, message) : null);
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

export const number = (n) => new Intl.NumberFormat().format(n);
export const signed = (n) => (n > 0 ? `+${number(n)}` : n < 0 ? `−${number(-n)}` : "0");
export function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
export const plural = (n, one, many = `${one}s`) => `${number(n)} ${n === 1 ? one : many}`;
