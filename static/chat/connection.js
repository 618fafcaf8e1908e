// The websocket to /ws/chat/: resumes the conversation this tab was in (remembered in
// sessionStorage) on every reconnect; reconnecting and pings are ReconnectingSocket's.

import { ReconnectingSocket } from "./reconnecting-socket.js";

const STORAGE_KEY = "chat:conversation";
const OWNER_STORAGE_KEY = "chat:owner";

/** Close codes the server uses to refuse a conversation (see DESIGN.md, "Websocket protocol"). */
export const CLOSE_FORBIDDEN = 4403;
export const CLOSE_NOT_FOUND = 4404;

/** This tab's sessionStorage; null where the browser refuses it (a frame on another site). */
function tabStorage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

export class ChatConnection {
  /**
   * @param {object} options
   * @param {string} options.path  websocket path, e.g. "/ws/chat/"
   * @param {(frame: object) => void} options.onFrame  every JSON frame from the server
   * @param {(state: import("./reconnecting-socket.js").ConnectionState, detail: {retryInMs?: number}) => void} options.onStateChange
   * @param {string | null} [options.ownerToken]  the embedded chat's owner token (the widget's
   *   frame gets no cookie): sent with every connection, the first one kept for this tab
   * @param {Storage} [options.storage]  where the current conversation's uuid is remembered
   *   (the rest of the options are ReconnectingSocket's timings)
   */
  constructor({
    path,
    onFrame,
    onStateChange,
    ownerToken = null,
    storage = tabStorage(),
    ...timings
  }) {
    this.storage = storage;
    this.pageOwnerToken = ownerToken;
    this.socket = new ReconnectingSocket({
      ...timings,
      path,
      readyFrameType: "conversation",
      onFrame,
      onStateChange,
      searchParams: () => ({ conversation: this.#readStored(), owner: this.#ownerToken() }),
      onReady: (frame) => this.#store(frame.conversation),
      onClose: (event) => {
        if (event.code === CLOSE_FORBIDDEN || event.code === CLOSE_NOT_FOUND) {
          // The remembered conversation is not ours (any more): start a fresh one.
          this.#forgetStored();
        }
        if (event.code === CLOSE_FORBIDDEN && this.pageOwnerToken) {
          // The kept token's session may have expired: this page's is fresh.
          this.#write(OWNER_STORAGE_KEY, this.pageOwnerToken);
        }
      },
    });
  }

  /** The uuid of the conversation this tab is in, or null before the first one. */
  get conversationId() {
    return this.#readStored();
  }

  start() {
    this.socket.start();
  }

  /**
   * Sends a frame if the conversation is ready.
   * @returns {boolean} whether it was handed to the socket
   */
  send(frame) {
    return this.socket.send(frame);
  }

  /** Forgets the current conversation and connects again, so the server starts a new one. */
  startNewConversation() {
    this.#forgetStored();
    this.socket.restart("new conversation");
  }

  /** Skips the backoff wait (e.g. when the browser comes back online). */
  reconnectNow() {
    this.socket.reconnectNow();
  }

  #readStored() {
    try {
      return this.storage.getItem(STORAGE_KEY);
    } catch {
      return null; // storage can be disabled or refused; we then just don't resume
    }
  }

  #store(conversation) {
    this.#write(STORAGE_KEY, conversation);
  }

  /** The owner token kept for this tab (the widget on the site's next page resumes with it). */
  #ownerToken() {
    if (!this.pageOwnerToken) return null;
    let kept = null;
    try {
      kept = this.storage.getItem(OWNER_STORAGE_KEY);
    } catch {
      /* see #readStored */
    }
    if (kept) return kept;
    this.#write(OWNER_STORAGE_KEY, this.pageOwnerToken);
    return this.pageOwnerToken;
  }

  #write(key, value) {
    try {
      this.storage.setItem(key, value);
    } catch {
      /* see #readStored */
    }
  }

  #forgetStored() {
    try {
      this.storage.removeItem(STORAGE_KEY);
    } catch {
      /* see #readStored */
    }
  }
}
