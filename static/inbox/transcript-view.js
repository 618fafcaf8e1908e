// One conversation's messages in the inbox: the customer's, the assistant's (with the articles
// it was shown, whether it declined, and the customer's rating) and the agents'. Every text
// goes in through textContent, never as HTML.

import { clockTime } from "./waited.js";

const SPEAKERS = { user: "Customer", assistant: "Assistant" };
const RATINGS = { 1: "Customer rated it helpful", [-1]: "Customer rated it not helpful" };

export class TranscriptView {
  /** @param {HTMLElement} root  the role="log" element (it is also the scroller) */
  constructor(root) {
    this.root = root;
  }

  /** A `transcript` frame's messages: the whole conversation. */
  show(messages) {
    this.root.replaceChildren(...messages.map((message) => this.#entry(message)));
    this.scrollToBottom();
  }

  clear() {
    this.root.replaceChildren();
  }

  /** A `message` frame for this conversation; a message already shown is left as it is. */
  append(message) {
    if (this.byId(message.id)) return;
    const stick = this.#isNearBottom();
    this.root.append(this.#entry(message));
    if (stick) this.scrollToBottom();
  }

  /** The agent's own reply, shown while it is being stored. */
  appendPending(clientId, text, agent) {
    const element = this.#entry({ id: null, role: "agent", text, agent });
    element.dataset.clientId = clientId;
    element.dataset.state = "pending";
    element.querySelector(".entry-note").textContent = "Sending…";
    this.root.append(element);
    this.scrollToBottom();
    return element;
  }

  /** `agent_message.saved`: the pending reply has its id. */
  markSaved(clientId, id) {
    const element = this.#byClientId(clientId);
    if (!element) return;
    if (this.byId(id)) {
      element.remove(); // the `message` frame drew it already
      return;
    }
    element.dataset.messageId = String(id);
    delete element.dataset.state;
    element.querySelector(".entry-note").textContent = "";
  }

  removePending(clientId) {
    this.#byClientId(clientId)?.remove();
  }

  byId(id) {
    return this.root.querySelector(`.entry[data-message-id="${Number(id)}"]`);
  }

  scrollToBottom() {
    this.root.scrollTop = this.root.scrollHeight;
  }

  #entry(message) {
    const element = document.createElement("article");
    element.className = `entry entry-${message.role}`;
    element.dataset.role = message.role;
    element.dataset.testid = "transcript-entry";
    if (message.id !== null && message.id !== undefined) {
      element.dataset.messageId = String(message.id);
    }

    const header = document.createElement("p");
    header.className = "entry-speaker";
    header.textContent =
      message.role === "agent"
        ? `${message.agent ?? "Agent"} (agent)`
        : (SPEAKERS[message.role] ?? message.role);
    const time = clockTime(message.created_at);
    if (time) {
      const clock = document.createElement("time");
      clock.dateTime = message.created_at;
      clock.textContent = time;
      header.append(" ", clock);
    }

    const body = document.createElement("p");
    body.className = "entry-text";
    body.dataset.testid = "entry-text";
    body.textContent = message.text;

    element.append(header, body);
    if (message.role === "assistant") element.append(this.#facts(message));
    const note = document.createElement("p");
    note.className = "entry-note";
    element.append(note);
    return element;
  }

  /** What staff need to judge a bot reply: its articles, a decline, the customer's rating. */
  #facts(message) {
    const facts = document.createElement("ul");
    facts.className = "entry-facts";
    facts.setAttribute("aria-label", "About this reply");
    const add = (text, kind) => {
      const item = document.createElement("li");
      item.textContent = text;
      item.dataset.kind = kind;
      facts.append(item);
    };
    if (message.declined) add("Declined", "declined");
    const articles = (message.articles ?? []).filter(Boolean);
    if (articles.length) add(`Articles: ${articles.join(", ")}`, "articles");
    if (message.rating in RATINGS) add(RATINGS[message.rating], "rating");
    return facts;
  }

  #byClientId(clientId) {
    for (const element of this.root.querySelectorAll(".entry[data-client-id]")) {
      if (element.dataset.clientId === clientId) return element;
    }
    return null;
  }

  #isNearBottom() {
    const { scrollTop, scrollHeight, clientHeight } = this.root;
    return scrollHeight - scrollTop - clientHeight < 80;
  }
}
