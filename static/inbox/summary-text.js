// The words for a conversation's summary (the inbox protocol's `conversation` objects), shared
// by the queue's rows and the open conversation's header.

import { durationSince } from "./waited.js";

const REASONS = {
  asked: "asked for a person",
  declines: "the assistant could not answer",
};

/** "Conversation 1a2b3c4d": customers are anonymous; the uuid's start tells them apart. */
export function conversationTitle(summary) {
  return `Conversation ${summary.id.slice(0, 8)}`;
}

/** Who has it and for how long, and why it came to a person. */
export function summaryLine(summary, me, nowMs = Date.now()) {
  const waited = durationSince(summary.waiting_since, nowMs);
  const reason = REASONS[summary.reason] ?? "";
  let who;
  if (summary.status === "waiting_for_agent") {
    who = waited ? `Waiting ${waited}` : "Waiting";
  } else if (summary.status === "with_agent") {
    const agent = summary.agent_id === me?.id ? "you" : summary.agent ?? "an agent";
    who = waited ? `With ${agent}, handed over ${waited} ago` : `With ${agent}`;
  } else if (summary.status === "open") {
    who = "Handed back to the assistant";
  } else {
    who = "Closed";
  }
  return reason && (summary.status === "waiting_for_agent" || summary.status === "with_agent")
    ? `${who} · ${reason[0].toUpperCase()}${reason.slice(1)}`
    : who;
}

const SPEAKERS = { user: "Customer", assistant: "Assistant", agent: "Agent" };

/** The last message's preview: "Customer: where is my order". */
export function lastMessageLine(summary) {
  const last = summary.last_message;
  if (!last) return "";
  return `${SPEAKERS[last.role] ?? last.role}: ${last.text}`;
}
