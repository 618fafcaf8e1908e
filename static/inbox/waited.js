// How long ago something happened, in the words the inbox shows ("4 min", "1 h 05 min").

const MINUTE_MS = 60_000;

/**
 * @param {string | null} sinceIso  an ISO 8601 time from the server
 * @param {number} [nowMs]
 * @returns {string} "" when the time is unknown
 */
export function durationSince(sinceIso, nowMs = Date.now()) {
  const since = sinceIso ? Date.parse(sinceIso) : Number.NaN;
  if (Number.isNaN(since)) return "";
  const minutes = Math.max(0, Math.floor((nowMs - since) / MINUTE_MS));
  if (minutes < 1) return "less than a minute";
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
  const days = Math.floor(hours / 24);
  return days === 1 ? "1 day" : `${days} days`;
}

/** A time of day for a transcript line, in the agent's locale. */
export function clockTime(iso) {
  const time = iso ? new Date(iso) : null;
  if (!time || Number.isNaN(time.getTime())) return "";
  return time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
