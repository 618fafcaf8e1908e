// The websocket to /ws/chat/: resumes the conversation this tab was in (remembered in
// sessionStorage) on every reconnect; reconnecting and pings are ReconnectingSocket's.

import { ReconnectingSocket } from "./reconnecting-socket.js";

const STORAGE_KEY = "northwind-chat:conversation";

/** Close codes the server uses to refuse a conversation (see DESIGN.md, "Websocket protocol"). */
export const CLOSE_FORBIDDEN = 4403;
export const CLOSE_NOT_FOUND = 4404;

export class ChatConnection {
  /**
   * @param {object} options
   * @param {string} options.path  websocket path, e.g. "/ws/chat/"
   * @param {(frame: object) => void} options.onFrame  every JSON frame from the server
   * @param {(state: import("./reconnecting-socket.js").ConnectionState, detail: {retryInMs?: number}) => void} options.onStateChange
   * @param {Storage} [options.storage]  where the current conversation's uuid is remembered
   *   (the rest of the options are ReconnectingSocket's timings)
   */
  constructor({ path, onFrame, onStateChange, storage = window.sessionStorage, ...timings }) {
    this.storage = storage;
    this.socket = new ReconnectingSocket({
      ...timings,
      path,
      readyFrameType: "conversation",
      onFrame,
      onStateChange,
      searchParams: () => ({ conversation: this.#readStored() }),
      onReady: (frame) => this.#store(frame.conversation),
      onClose: (event) => {
        if (event.code === CLOSE_FORBIDDEN || event.code === CLOSE_NOT_FOUND) {
          // The remembered conversation is not ours (any more): start a fresh one.
          this.#forgetStored();
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
      return null; // storage can be disabled; we then just don't resume
    }
  }

  #store(conversation) {
    try {
      this.storage.setItem(STORAGE_KEY, conversation);
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
