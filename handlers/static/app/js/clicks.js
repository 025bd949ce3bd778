// A money-moving click, the same way on every page: the button is busy while it runs (one
// click, one request), the form's old message goes at once (it never stays under a new
// attempt), retries are said in the same place, and the last word replaces them.

import { outcomeUnknown } from "./api.js";
import { errorMessage } from "./messages.js";
import { busy, notice } from "./ui.js";

/**
 * act(button, target, work): work({onRetry}) does the request(s) and shows the answer in
 * `target`; a thrown error is shown there in words. Returns what work returned, or the error.
 */
export function act(button, target, work) {
  notice(target, "");
  const onRetry = (error, attempt) => notice(target, `${errorMessage(error)} Retrying (${attempt})…`, "warn");
  return busy(button, async () => {
    try {
      return await work({ onRetry });
    } catch (error) {
      notice(target, errorMessage(error), "error");
      return error;
    }
  });
}

/**
 * What to say when a money-moving request ended without an answer: `what` ("your gift") may
 * have happened, `check` says where to see it, and the same choice again is the same request
 * (Intent), never a second one.
 */
export function unknownOutcome(error, what, check) {
  if (!outcomeUnknown(error)) return errorMessage(error);
  return `${errorMessage(error)} We could not confirm ${what}: ${check}. Pressing the button again with the same choice does not do it twice.`;
}
