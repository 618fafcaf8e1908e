// The staff inbox: the queue of conversations handed to a person, one conversation's
// transcript, and the agent's actions on it (claim, reply, hand back, close) over /ws/inbox/.
// Protocol: DESIGN.md, "Staff inbox". Frames it does not know are ignored.

import { newClientId } from "../chat/client-id.js";
import { Composer } from "../chat/composer.js";
import { ConnectionStatus } from "../chat/connection-status.js";
import { ReconnectingSocket } from "../chat/reconnecting-socket.js";
import { QueueList } from "./queue-list.js";
import { conversationTitle, summaryLine } from "./summary-text.js";
import { TranscriptView } from "./transcript-view.js";

const CLOSE_FORBIDDEN = 4403;
// The socket's pings are the agent's presence: customers hear "nobody is online" after 90 s.
const PING_INTERVAL_MS = 30_000;
const CLOCK_TICK_MS = 15_000;
const ERROR_TEXT = {
  conflict: "Someone else changed this conversation first.",
  forbidden: "Only staff can answer customers. Please sign in again.",
  not_found: "That conversation no longer exists.",
  invalid: "That couldn't be sent. Please check it and try again.",
  too_long: "That is too long to send.",
  busy: "Something went wrong on the server. Please try again.",
};
/** What the reply box says, by who may write in the open conversation. */
const REPLY_PLACEHOLDERS = {
  mine: "Write to the customer…",
  waiting_for_agent: "Claim this conversation to reply.",
  with_agent: "Another agent is answering this conversation.",
  open: "The assistant answers this conversation again.",
  closed: "This conversation is closed.",
  other: "Choose a conversation to reply.",
};
/** Errors after which an agent's reply being sent was not stored. */
const REJECTS_REPLY = new Set(Object.keys(ERROR_TEXT));

const app = document.getElementById("inbox-app");
const status = new ConnectionStatus(document.getElementById("connection-status"));
const errorBanner = document.getElementById("error-banner");
const errorText = document.getElementById("error-text");
const announcer = document.getElementById("inbox-announcer");
const agentLine = document.getElementById("agent-name");
const pane = document.getElementById("pane");
const paneEmpty = document.getElementById("pane-empty");
const paneHeading = document.getElementById("pane-heading");
const paneMeta = document.getElementById("pane-meta");
const claimButton = document.getElementById("claim-button");
const handBackButton = document.getElementById("hand-back-button");
const closeButton = document.getElementById("close-button");
const replyInput = document.getElementById("reply-input");
const replyHint = document.getElementById("reply-hint");
const baseTitle = document.title;

/** The signed-in agent, {id, name}, from the `inbox` frame. */
let me = null;
let connected = false;
/** The conversation open in the pane: its id and latest summary. */
let current = null;
/** Replies sent but not yet acknowledged, by client_id: {conversation, text}. */
const pendingReplies = new Map();
/** The last frame that expects an answer, so that an `error` frame can be attributed. */
let lastRequest = null;

const queue = new QueueList({
  waitingList: document.getElementById("waiting-list"),
  assignedList: document.getElementById("assigned-list"),
  waitingCount: document.getElementById("waiting-count"),
  waitingEmpty: document.getElementById("waiting-empty"),
  assignedEmpty: document.getElementById("assigned-empty"),
  moreLine: document.getElementById("queue-more-line"),
  moreButton: document.getElementById("queue-more"),
  onSelect: openConversation,
  onMore: (offset) => request({ type: "inbox.page", offset }),
});
const transcript = new TranscriptView(document.getElementById("transcript"));

const socket = new ReconnectingSocket({
  path: app.dataset.wsPath,
  readyFrameType: "inbox",
  pingIntervalMs: PING_INTERVAL_MS,
  onFrame: handleFrame,
  onStateChange: (state) => {
    status.show(state);
    connected = state === "connected";
    refreshPane();
  },
  onClose: (event) => {
    if (event.code === CLOSE_FORBIDDEN) showError(ERROR_TEXT.forbidden);
  },
});

const composer = new Composer({
  form: document.getElementById("reply-form"),
  input: replyInput,
  sendButton: document.getElementById("reply-send"),
  count: document.getElementById("reply-count"),
  counter: document.getElementById("reply-counter"),
  maxChars: Number(app.dataset.maxMessageChars),
  onSend: sendReply,
});

claimButton.addEventListener("click", () => act("claim"));
handBackButton.addEventListener("click", () => act("hand_back"));
closeButton.addEventListener("click", () => act("close"));
document.getElementById("error-dismiss").addEventListener("click", hideError);
setInterval(() => {
  queue.refreshTimes();
  if (current) paneMeta.textContent = summaryLine(current.summary, me);
}, CLOCK_TICK_MS);

socket.start();
refreshPane();

function handleFrame(frame) {
  switch (frame.type) {
    case "inbox":
      me = frame.agent;
      agentLine.textContent = `Signed in as ${me.name}`;
      queue.replaceAll(frame.conversations ?? [], me, frame.total);
      updateTitle();
      resendPending();
      // Messages may have arrived while we were away: draw the open conversation again.
      if (current) request({ type: "transcript", conversation: current.id });
      break;
    case "inbox.page":
      queue.addPage(frame.conversations ?? [], frame.total);
      break;
    case "conversation.updated":
      conversationUpdated(frame.conversation);
      break;
    case "transcript":
      showTranscript(frame.conversation, frame.messages ?? []);
      break;
    case "message":
      if (current?.id === frame.conversation) transcript.append(frame.message);
      break;
    case "agent_message.saved":
      if (lastRequest?.clientId === frame.client_id) lastRequest = null;
      pendingReplies.delete(frame.client_id);
      transcript.markSaved(frame.client_id, frame.id);
      composer.setWaitingForReply(false);
      break;
    case "error":
      handleError(frame);
      break;
    default:
      break; // newer server, older page: ignore what we don't know
  }
}

function conversationUpdated(summary) {
  const change = queue.update(summary);
  if (change === "added" && summary.status === "waiting_for_agent") {
    announce(`${conversationTitle(summary)} is waiting for a person.`);
  }
  if (current?.id === summary.id) {
    if (lastRequest?.conversation === summary.id && lastRequest.kind !== "agent_message") {
      lastRequest = null; // our claim / hand back / close went through
    }
    current.summary = summary;
    refreshPane();
  }
  updateTitle();
}

function openConversation(id) {
  hideError();
  if (current?.id !== id) {
    current = { id, summary: queue.get(id) };
    transcript.clear();
  }
  queue.select(id);
  request({ type: "transcript", conversation: id });
  refreshPane();
}

function showTranscript(summary, messages) {
  // The claimer gets the transcript: the agent goes on by writing.
  const claimed = lastRequest?.kind === "claim" && lastRequest.conversation === summary.id;
  if (lastRequest?.conversation === summary.id && lastRequest.kind !== "agent_message") {
    lastRequest = null;
  }
  current = { id: summary.id, summary };
  queue.select(summary.id);
  transcript.show(messages);
  for (const [clientId, reply] of pendingReplies) {
    if (reply.conversation === summary.id) transcript.appendPending(clientId, reply.text, me?.name);
  }
  refreshPane();
  if (claimed && ownedByMe(summary)) composer.focus();
}

/** claim, hand_back, close: the answer is a `conversation.updated` (or an error). */
function act(kind) {
  if (!current) return;
  hideError();
  request({ type: kind, conversation: current.id });
}

function request(frame) {
  if (!socket.send(frame)) {
    showError("You're not connected right now. Please try again in a moment.");
    return false;
  }
  lastRequest = { kind: frame.type, conversation: frame.conversation, clientId: frame.client_id };
  return true;
}

function sendReply(text) {
  if (!current || !ownedByMe(current.summary)) return false;
  const clientId = newClientId();
  const frame = { type: "agent_message", conversation: current.id, text, client_id: clientId };
  if (!request(frame)) return false;
  hideError();
  pendingReplies.set(clientId, { conversation: current.id, text });
  transcript.appendPending(clientId, text, me?.name);
  composer.setWaitingForReply(true);
  return true;
}

/** After a reconnect: the server stores a reply once per client_id, so resending is safe. */
function resendPending() {
  for (const [clientId, reply] of pendingReplies) {
    const { conversation, text } = reply;
    socket.send({ type: "agent_message", conversation, text, client_id: clientId });
    lastRequest = { kind: "agent_message", conversation: reply.conversation, clientId };
  }
}

function handleError(frame) {
  showError(frame.detail || ERROR_TEXT[frame.code] || "Something went wrong. Please try again.");
  if (lastRequest?.kind === "agent_message" && REJECTS_REPLY.has(frame.code)) {
    const reply = pendingReplies.get(lastRequest.clientId);
    pendingReplies.delete(lastRequest.clientId);
    transcript.removePending(lastRequest.clientId);
    if (reply && reply.conversation === current?.id) composer.restore(reply.text);
  }
  lastRequest = null;
  composer.setWaitingForReply(false);
  refreshPane();
}

function ownedByMe(summary) {
  return summary?.status === "with_agent" && me !== null && summary.agent_id === me.id;
}

/** Shows the open conversation's state and which actions the agent has on it. */
function refreshPane() {
  pane.hidden = current === null;
  paneEmpty.hidden = current !== null;
  if (!current) {
    composer.setConnected(false);
    return;
  }
  const summary = current.summary;
  paneHeading.textContent = summary ? conversationTitle(summary) : "Conversation";
  paneMeta.textContent = summary ? summaryLine(summary, me) : "";
  const status = summary?.status;
  const mine = ownedByMe(summary);
  const busy = lastRequest !== null && lastRequest.kind !== "transcript";
  claimButton.hidden = status !== "waiting_for_agent";
  claimButton.disabled = !connected || busy;
  // Anyone may release a conversation nobody has claimed; a claimed one only its agent.
  const releasable = status === "waiting_for_agent" || mine;
  const ended = status === "open" || status === "closed";
  handBackButton.hidden = ended;
  closeButton.hidden = ended;
  handBackButton.disabled = !connected || busy || !releasable;
  closeButton.disabled = !connected || busy || !releasable;
  replyInput.disabled = !mine;
  replyInput.placeholder = REPLY_PLACEHOLDERS[mine ? "mine" : status] ?? REPLY_PLACEHOLDERS.other;
  replyHint.textContent = mine ? "Enter to send, Shift+Enter for a new line." : "";
  composer.setConnected(connected && mine);
}

function updateTitle() {
  const waiting = queue.waitingTotal;
  document.title = waiting ? `(${waiting}) ${baseTitle}` : baseTitle;
}

function announce(text) {
  announcer.textContent = text;
}

function showError(message) {
  errorText.textContent = message;
  errorBanner.hidden = false;
}

function hideError() {
  errorBanner.hidden = true;
  errorText.textContent = "";
}
