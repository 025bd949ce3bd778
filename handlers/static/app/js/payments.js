// Paying for coins. The sandbox provider's test cards (local server, test stacks); a real
// provider's frontend gets a token from the provider's own widget instead. The stream page's
// top-up in place pays with DEFAULT_CARD; the wallet lets the user pick.

import { Intent } from "./api.js";
import { PURCHASE_COINS } from "./documents.js";
import { plural } from "./ui.js";

export const TEST_CARDS = [
  ["tok_visa", "Test card: approved (tok_visa)"],
  ["tok_chargeDeclined", "Test card: declined (tok_chargeDeclined)"],
];
export const DEFAULT_CARD = TEST_CARDS[0][0];

/** The package to offer when `short` coins are missing: the cheapest that covers them. */
export function packageFor(short, packages) {
  return packages.find((p) => p.coins >= short) ?? packages.at(-1);
}

export const packageLabel = (p) => `Buy ${plural(p.coins, "coin")} for ${p.price.formatted}`;

/**
 * Buy a package: one Intent per package button, so a click after "could not be reached"
 * repeats the same purchase (charged once). Returns the result-union member.
 */
export async function buy(api, intents, pkg, card, onRetry) {
  intents[pkg.id] ||= new Intent("buy");
  const base = { packageId: pkg.id, paymentToken: card };
  const input = { ...base, idempotencyKey: intents[pkg.id].key(base) };
  const result = (await api.mutate(PURCHASE_COINS, { input }, { onRetry })).purchaseCoins;
  intents[pkg.id].settle();
  return result;
}
