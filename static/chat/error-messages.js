// Friendly wording for the server's `error` frames (codes are part of the protocol).

const MESSAGES = {
  rate_limited: "You're sending messages too fast. Please wait a moment and try again.",
  busy: "The assistant is busy or unavailable right now. Please try again in a moment.",
  not_found: "We couldn't find that message. It may belong to an earlier conversation.",
  bad_json: "Something went wrong sending that. Please try again.",
  unknown_type: "Something went wrong sending that. Please try again.",
  invalid: "That couldn't be sent. Please check it and try again.",
  forbidden: "That isn't possible from the chat.",
  conflict: "The conversation changed in the meantime. Please try again.",
};

/**
 * @param {string} code  the error frame's code
 * @param {{maxMessageChars: number}} limits
 * @returns {string}
 */
export function friendlyErrorMessage(code, limits) {
  if (code === "too_long") {
    return `That message is too long. Please keep it under ${limits.maxMessageChars} characters.`;
  }
  return MESSAGES[code] ?? "Something went wrong. Please try again.";
}

/** Errors after which a message the customer just sent was not accepted. */
export const REJECTS_PENDING_MESSAGE = new Set([
  "rate_limited",
  "too_long",
  "invalid",
  "bad_json",
  "busy",
]);
