// What the user reads when something did not happen: result-union members (user errors,
// answered as data) and GraphQL error codes, in the words of the product.

import { number, plural } from "./ui.js";

const USER_ERRORS = {
  InsufficientCoins: (e) =>
    `You need ${plural(e.required, "coin")} for that and have ${number(e.available)}.`,
  InsufficientDiamonds: (e) =>
    `That needs ${plural(e.required, "diamond")}; you have ${number(e.available)} you can withdraw now.`,
  StreamNotLive: () => "This stream has ended, so it can't receive gifts any more.",
  AgeRestricted: () => "You must be 18 or older to do this.",
  AccountRestricted: () =>
    "Your account is restricted after a disputed payment: an admin must clear it first.",
  PaymentDeclined: () => "Your card was declined. Nothing was charged.",
  BelowMinimum: (e) => `The smallest withdrawal is ${e.minimum.formatted}.`,
  DailyLimitExceeded: (e) => `You can request at most ${e.remaining.formatted} more today (UTC).`,
  IdempotencyConflict: () => "This clashed with an earlier request. Please try again.",
  AlreadyJoined: () => "You have already joined.",
  PayoutAccountRequired: (e) =>
    e.status === "NOT_CONNECTED"
      ? "Withdrawals are paid to your payout account: set it up first (Payouts, above)."
      : "Your payouts are not enabled yet: finish setting them up first (Payouts, above).",
  // PayoutRefused: the API's own message says why (and that the withdrawal stays pending).
  // NotFound, NotAllowed, InvalidState, InvalidInput: the API's own message says it best.
};

const ERROR_CODES = {
  UNAUTHENTICATED: "Your sign-in has expired. Please sign in again.",
  FORBIDDEN: "Only admins can do this.",
  PAYMENTS_NOT_CONFIGURED: "Payments are not set up on this server yet, so coins can't be bought.",
  PAYOUTS_NOT_CONFIGURED: "This server pays withdrawals by hand: no payout account is needed.",
  TRY_AGAIN: "The service is busy and your request did not finish.",
  NETWORK: "The server could not be reached.",
  HTTP_429: "Too many requests. Wait a moment and try again.",
  QUERY_TOO_COMPLEX: "That request asks for too much at once.",
  INTERNAL_SERVER_ERROR: "Something went wrong on our side. Please try again.",
};

/** The message for a user-error union member (anything with a __typename and a message). */
export function userErrorMessage(result) {
  const message = USER_ERRORS[result.__typename];
  return message ? message(result) : result.message || "That didn't work.";
}

/** The message for an ApiError (or anything thrown). */
export function errorMessage(error) {
  return ERROR_CODES[error?.code] || error?.message || "Something went wrong.";
}

const KINDS = {
  PURCHASE: "Bought coins",
  REFUND: "Refund",
  GIFT_SENT: "Gift sent",
  GIFT_RECEIVED: "Gift received",
  EVENT_ENTRY: "Event entry",
  EVENT_INCOME: "Event income",
  WITHDRAWAL: "Withdrawal",
  WITHDRAWAL_RETURNED: "Withdrawal returned",
  CHARGEBACK: "Chargeback",
  GIFT_REVERSED: "Gift reversed",
  CLAWBACK: "Clawback",
};
export const kindLabel = (kind) => KINDS[kind] || kind;

/** A history row in words: "Gift sent: 2 × Galaxy to Cora" (with Transaction.transfer). */
export function entryLabel(entry) {
  const t = entry.transfer;
  if (!t) return kindLabel(entry.kind);
  const other = entry.kind === "GIFT_SENT" ? `to ${t.recipient.displayName}` : `from ${t.sender.displayName}`;
  return `${kindLabel(entry.kind)}: ${t.quantity} × ${t.gift.name} ${other}`;
}

const STATUSES = { PENDING: "Pending review", PAID: "Paid", REJECTED: "Rejected" };
export const statusLabel = (status) => STATUSES[status] || status;

const PAYOUT_STATUSES = {
  NOT_CONNECTED: "Not set up",
  ONBOARDING: "Setup not finished",
  ENABLED: "Enabled",
  RESTRICTED: "Restricted",
};
export const payoutStatusLabel = (status) => PAYOUT_STATUSES[status] || status;

/** What the processor still needs, readable: "identity.individual.verification.document" ->
 * "Individual: verification document" (its own term stays in the title). */
export function requirementLabel(name) {
  const [first, ...rest] = name.replace(/^(identity|configuration)\./, "").split(".").map((w) => w.replaceAll("_", " "));
  const head = `${first.charAt(0).toUpperCase()}${first.slice(1)}`;
  return rest.length ? `${head}: ${rest.join(" ")}` : head;
}
