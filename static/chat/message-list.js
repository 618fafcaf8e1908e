// The conversation's messages on screen. Every text goes in through textContent, never as HTML.

// Who speaks: the assistant's and the team's names are the business profile's (data attributes
// of the chat's root element).
const app = document.getElementById("chat-app");
const SPEAKER = {
  user: "You",
  assistant: app?.dataset.assistantName || "Assistant",
  agent: app?.dataset.teamName || "Our team",
};
const STICK_TO_BOTTOM_PX = 80;

export class MessageList {
  /**
   * @param {HTMLElement} root  the role="log" element (it is also the scroller)
   * @param {HTMLElement} welcome  shown while the conversation is empty
   */
  constructor(root, welcome) {
    this.root = root;
    this.welcome = welcome;
  }

  clear() {
    for (const message of this.root.querySelectorAll(".message")) message.remove();
    this.#updateWelcome();
  }

  /**
   * @param {"user" | "assistant" | "agent"} role  "agent": a person from the team
   * @param {string} text
   * @param {{id?: number | null, clientId?: string, pending?: boolean, agent?: string | null}} [options]
   *   `agent`: the name of the person who wrote an agent message
   * @returns {HTMLElement}
   */
  add(role, text, { id = null, clientId = "", pending = false, agent = null } = {}) {
    const stick = this.#isNearBottom();
    const element = document.createElement("div");
    element.className = `message message-${role}`;
    element.dataset.role = role;
    if (id !== null) element.dataset.messageId = String(id);
    if (clientId) element.dataset.clientId = clientId;
    if (pending) element.dataset.state = "pending";

    const speaker = document.createElement("p");
    speaker.className = role === "user" ? "speaker visually-hidden" : "speaker";
    speaker.textContent = SPEAKER[role];
    if (role === "agent") {
      speaker.dataset.testid = "agent-name";
      speaker.textContent = agent ? `${agent}, ${SPEAKER.agent}` : SPEAKER.agent;
    }

    const bubble = document.createElement("div");
    bubble.className = "bubble";
    const body = document.createElement("p");
    body.className = "message-text";
    body.dataset.testid = "message-text";
    body.textContent = text;
    bubble.append(body);

    element.append(speaker, bubble);
    if (role === "user") {
      const note = document.createElement("p");
      note.className = "message-note";
      note.textContent = pending ? "Sending…" : "";
      element.append(note);
    }
    this.root.append(element);
    this.#updateWelcome();
    if (stick || role === "user") this.scrollToBottom();
    return element;
  }

  /** The user message with this client id was stored by the server. */
  markSaved(clientId, id) {
    const element = this.#byClientId(clientId);
    if (!element) return;
    element.dataset.messageId = String(id);
    delete element.dataset.state;
    element.querySelector(".message-note").textContent = "";
  }

  markResending(clientId) {
    const element = this.#byClientId(clientId);
    if (element) element.querySelector(".message-note").textContent = "Sending again…";
  }

  removeByClientId(clientId) {
    this.#byClientId(clientId)?.remove();
    this.#updateWelcome();
  }

  /** A bot reply begins: an empty bubble with a typing indicator until the first delta. */
  startReply(id) {
    const element = this.add("assistant", "", { id });
    element.dataset.state = "streaming";
    element.setAttribute("aria-busy", "true");
    const typing = document.createElement("span");
    typing.className = "typing";
    typing.dataset.testid = "typing";
    const dots = document.createElement("span");
    dots.className = "typing-dots";
    dots.setAttribute("aria-hidden", "true");
    for (let i = 0; i < 3; i += 1) dots.append(document.createElement("span"));
    const label = document.createElement("span");
    label.className = "visually-hidden";
    label.textContent = "Assistant is typing";
    typing.append(dots, label);
    element.querySelector(".bubble").append(typing);
    return element;
  }

  appendDelta(id, text) {
    const element = this.byId(id);
    if (!element) return;
    const stick = this.#isNearBottom();
    element.querySelector(".typing")?.remove();
    element.querySelector(".message-text").append(document.createTextNode(text));
    if (stick) this.scrollToBottom();
  }

  /** The reply is complete; `text` is authoritative (it replaces the streamed deltas). */
  endReply(id, text) {
    const element = this.byId(id);
    if (!element) return null;
    element.querySelector(".typing")?.remove();
    element.querySelector(".message-text").textContent = text;
    element.dataset.state = "done";
    element.removeAttribute("aria-busy");
    return element;
  }

  /** Replies still streaming (when the connection drops or an error ends them). */
  streamingReplies() {
    return [...this.root.querySelectorAll('.message[data-state="streaming"]')];
  }

  byId(id) {
    return this.root.querySelector(`.message[data-message-id="${Number(id)}"]`);
  }

  scrollToBottom() {
    this.root.scrollTop = this.root.scrollHeight;
  }

  #byClientId(clientId) {
    for (const element of this.root.querySelectorAll(".message[data-client-id]")) {
      if (element.dataset.clientId === clientId) return element;
    }
    return null;
  }

  #isNearBottom() {
    const { scrollTop, scrollHeight, clientHeight } = this.root;
    return scrollHeight - scrollTop - clientHeight < STICK_TO_BOTTOM_PX;
  }

  #updateWelcome() {
    this.welcome.hidden = this.root.querySelector(".message") !== null;
  }
}
