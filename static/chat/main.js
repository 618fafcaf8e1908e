// The chat page: wires the socket, the message list, the composer, the feedback controls, and
// the handoff to a person (button, status line, agents' messages, the survey after closing).
// Protocol: DESIGN.md, "Websocket protocol" (version 2). Frames it does not know are ignored.

import { newClientId } from "./client-id.js";
import { ChatConnection } from "./connection.js";
import { ConnectionStatus } from "./connection-status.js";
import { Composer } from "./composer.js";
import { friendlyErrorMessage, REJECTS_PENDING_MESSAGE } from "./error-messages.js";
import { FeedbackControls } from "./feedback-controls.js";
import { HandoffStatus } from "./handoff-status.js";
import { MessageList } from "./message-list.js";
import { SatisfactionSurvey } from "./satisfaction-survey.js";
import { widgetFrame } from "./widget-frame.js";

const app = document.getElementById("chat-app");
const limits = { maxMessageChars: Number(app.dataset.maxMessageChars) };
const formTemplate = document.getElementById("feedback-form-template");

const list = new MessageList(
  document.getElementById("message-list"),
  document.getElementById("welcome"),
);
const status = new ConnectionStatus(document.getElementById("connection-status"));
const errorBanner = document.getElementById("error-banner");
const errorText = document.getElementById("error-text");

/** Messages sent but not yet acknowledged (user_message.saved), by client_id, in send order. */
const outbox = new Map();
/** Feedback controls of each bot reply on screen, by message id. */
const feedbackControls = new Map();
/** What the last frame that expects an answer was, so an `error` frame can be attributed. */
let lastRequest = null;

// In the widget's frame on another site (templates/conversations/widget.html), no cookie
// reaches the server, and the widget keeps the conversation for the tab (./widget-frame.js).
const embedded = widgetFrame();
const connection = new ChatConnection({
  path: app.dataset.wsPath,
  ownerToken: document.querySelector('meta[name="chat-owner-token"]')?.content || null,
  ...(embedded ? { storage: embedded.storage } : {}),
  onFrame: handleFrame,
  onStateChange: (state) => {
    status.show(state);
    composer.setConnected(state === "connected");
    handoff.setConnected(state === "connected");
    if (state !== "connected") interruptStreamingReplies();
  },
});

const composer = new Composer({
  form: document.getElementById("composer"),
  input: document.getElementById("composer-input"),
  sendButton: document.getElementById("send-button"),
  count: document.getElementById("composer-count"),
  counter: document.getElementById("composer-counter"),
  maxChars: limits.maxMessageChars,
  onSend: sendUserMessage,
});

const handoff = new HandoffStatus({
  banner: document.getElementById("handoff-status"),
  button: document.getElementById("handoff-button"),
  onRequest: requestPerson,
  focusWhenHidden: document.getElementById("composer-input"),
});

const survey = new SatisfactionSurvey({
  form: document.getElementById("csat-form"),
  thanks: document.getElementById("csat-thanks"),
  onSubmit: sendSatisfaction,
  focusWhenDone: document.getElementById("composer-input"),
});

document.getElementById("error-dismiss").addEventListener("click", hideError);
document.getElementById("new-conversation").addEventListener("click", () => {
  outbox.clear();
  feedbackControls.clear();
  lastRequest = null;
  list.clear();
  hideError();
  handoff.reset("open");
  survey.clear();
  composer.setWaitingForReply(false);
  connection.startNewConversation();
  composer.focus();
});

connection.start();
embedded?.start();

function sendUserMessage(text) {
  const clientId = newClientId();
  if (!connection.send({ type: "user_message", text, client_id: clientId })) {
    showError("You're not connected right now. Your message will be ready to send when we reconnect.");
    return false;
  }
  hideError();
  handoff.clearNote();
  outbox.set(clientId, text);
  lastRequest = { kind: "message", clientId };
  list.add("user", text, { clientId, pending: true });
  composer.setWaitingForReply(true);
  return true;
}

function sendFeedback(messageId, { rating, reason, correction }) {
  const frame = { type: "feedback", message_id: messageId, rating };
  if (reason) frame.reason = reason;
  if (correction) frame.correction = correction;
  if (!connection.send(frame)) {
    showError("You're not connected right now. Please try again in a moment.");
    return false;
  }
  hideError();
  lastRequest = { kind: "feedback", messageId };
  return true;
}

function requestPerson() {
  if (!connection.send({ type: "handoff" })) {
    showError("You're not connected right now. Please try again in a moment.");
    return false;
  }
  hideError();
  lastRequest = { kind: "handoff" };
  return true;
}

function sendSatisfaction({ score, comment }) {
  const frame = { type: "csat", score };
  if (comment) frame.comment = comment;
  if (!connection.send(frame)) {
    showError("You're not connected right now. Please try again in a moment.");
    return false;
  }
  hideError();
  lastRequest = { kind: "csat" };
  return true;
}

function handleFrame(frame) {
  switch (frame.type) {
    case "conversation":
      // Protocol 1 servers send no status: their conversations are always the assistant's.
      handoff.reset(frame.status ?? "open");
      if (frame.status !== "closed") survey.hide();
      showConversation(frame.messages ?? []);
      break;
    case "status":
      if (lastRequest?.kind === "handoff") lastRequest = null;
      handoff.show(frame);
      if (frame.status !== "closed") survey.hide();
      // Nobody replies to what was sent while a person answers: don't wait for it.
      if (handoff.withAPerson) composer.setWaitingForReply(outbox.size > 0);
      break;
    case "agent_message":
      if (!list.byId(frame.id)) list.add("agent", frame.text, { id: frame.id, agent: frame.agent });
      break;
    case "csat.request":
      survey.open();
      break;
    case "csat.saved":
      if (lastRequest?.kind === "csat") lastRequest = null;
      survey.saved();
      break;
    case "user_message.saved":
      outbox.delete(frame.client_id);
      if (list.byId(frame.id)) {
        // A resend the server had already stored (it is in the history we were sent): no
        // second copy on screen, and no reply follows on this connection.
        list.removeByClientId(frame.client_id);
        composer.setWaitingForReply(outbox.size > 0);
      } else {
        list.markSaved(frame.client_id, frame.id);
        // A person answers: the assistant will not, so the customer may write on.
        if (handoff.withAPerson) composer.setWaitingForReply(outbox.size > 0);
      }
      break;
    case "bot_message.start":
      addReply(frame.id, "", null, { streaming: true });
      break;
    case "bot_message.delta":
      list.appendDelta(frame.id, frame.text);
      break;
    case "bot_message.end":
      if (!list.byId(frame.id)) addReply(frame.id, "", null, { streaming: true });
      list.endReply(frame.id, frame.text);
      feedbackControls.get(frame.id)?.setEnabled(true);
      composer.setWaitingForReply(outbox.size > 0);
      break;
    case "feedback.saved":
      feedbackControls.get(frame.message_id)?.saved(frame.rating);
      break;
    case "error":
      handleError(frame);
      break;
    default:
      break; // newer server, older page: ignore what we don't know
  }
}

/** (Re)draws the conversation from the server's copy, then resends what was never acknowledged. */
function showConversation(messages) {
  feedbackControls.clear();
  list.clear();
  for (const message of messages) {
    if (message.role === "assistant") {
      addReply(message.id, message.text, message.rating ?? null, { streaming: false });
    } else if (message.role === "agent") {
      list.add("agent", message.text, { id: message.id, agent: message.agent ?? null });
    } else {
      list.add(message.role === "user" ? "user" : "assistant", message.text, { id: message.id });
    }
  }
  for (const [clientId, text] of outbox) {
    // Same client_id: if the server did store it before the drop, it won't store it twice.
    list.add("user", text, { clientId, pending: true });
    list.markResending(clientId);
    connection.send({ type: "user_message", text, client_id: clientId });
    lastRequest = { kind: "message", clientId };
  }
  composer.setWaitingForReply(outbox.size > 0);
}

function addReply(id, text, rating, { streaming }) {
  const element = streaming ? list.startReply(id) : list.add("assistant", text, { id });
  const controls = new FeedbackControls({
    messageId: id,
    rating,
    formTemplate,
    onSubmit: sendFeedback,
  });
  controls.setEnabled(!streaming);
  element.append(controls.element);
  feedbackControls.set(id, controls);
}

function handleError(frame) {
  showError(friendlyErrorMessage(frame.code, limits));
  if (lastRequest?.kind === "feedback") {
    feedbackControls.get(lastRequest.messageId)?.failed();
  } else if (lastRequest?.kind === "handoff") {
    handoff.failed();
  } else if (lastRequest?.kind === "csat") {
    if (frame.code === "invalid") {
      // Answered already (another tab), or the conversation was reopened: nothing to answer.
      if (frame.detail) showError(frame.detail);
      survey.hide();
    } else {
      survey.failed();
    }
  } else if (
    lastRequest?.kind === "message" &&
    outbox.has(lastRequest.clientId) &&
    REJECTS_PENDING_MESSAGE.has(frame.code)
  ) {
    // Not stored: take it off the list and give the text back to the customer.
    const text = outbox.get(lastRequest.clientId);
    outbox.delete(lastRequest.clientId);
    list.removeByClientId(lastRequest.clientId);
    composer.restore(text);
  }
  lastRequest = null;
  interruptStreamingReplies();
  composer.setWaitingForReply(outbox.size > 0);
}

/** A reply that will not finish on screen: drop it if empty, else keep what arrived. */
function interruptStreamingReplies() {
  for (const element of list.streamingReplies()) {
    const id = Number(element.dataset.messageId);
    if (element.querySelector(".message-text").textContent === "") {
      element.remove();
      feedbackControls.delete(id);
    } else {
      list.endReply(id, element.querySelector(".message-text").textContent);
      element.dataset.state = "interrupted";
    }
  }
}

function showError(message) {
  errorText.textContent = message;
  errorBanner.hidden = false;
}

function hideError() {
  errorBanner.hidden = true;
  errorText.textContent = "";
}
