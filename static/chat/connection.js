// The websocket to /ws/chat/: reconnects with exponential backoff and jitter, resumes the
// conversation it was in, and pings so that a dead connection is noticed.

const STORAGE_KEY = "northwind-chat:conversation";

/** Close codes the server uses to refuse a conversation (see DESIGN.md, "Websocket protocol"). */
export const CLOSE_FORBIDDEN = 4403;
export const CLOSE_NOT_FOUND = 4404;
const CLOSE_KEEPALIVE_TIMEOUT = 4000;

/**
 * @typedef {"connecting" | "connected" | "reconnecting" | "offline"} ConnectionState
 */

export class ChatConnection {
  /**
   * @param {object} options
   * @param {string} options.path  websocket path, e.g. "/ws/chat/"
   * @param {(frame: object) => void} options.onFrame  every JSON frame from the server
   * @param {(state: ConnectionState, detail: {retryInMs?: number}) => void} options.onStateChange
   * @param {Storage} [options.storage]  where the current conversation's uuid is remembered
   */
  constructor({
    path,
    onFrame,
    onStateChange,
    storage = window.sessionStorage,
    pingIntervalMs = 25_000,
    pongTimeoutMs = 10_000,
    backoffBaseMs = 500,
    backoffMaxMs = 30_000,
  }) {
    this.path = path;
    this.onFrame = onFrame;
    this.onStateChange = onStateChange;
    this.storage = storage;
    this.pingIntervalMs = pingIntervalMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.backoffBaseMs = backoffBaseMs;
    this.backoffMaxMs = backoffMaxMs;

    /** @type {WebSocket | null} */
    this.socket = null;
    this.ready = false; // true once the server's `conversation` frame has arrived
    this.attempt = 0;
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;

    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.#setState("offline"));
  }

  /** The uuid of the conversation this tab is in, or null before the first one. */
  get conversationId() {
    return this.#readStored();
  }

  start() {
    this.#connect();
  }

  /**
   * Sends a frame if the conversation is ready.
   * @returns {boolean} whether it was handed to the socket
   */
  send(frame) {
    if (!this.ready || this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Forgets the current conversation and connects again, so the server starts a new one. */
  startNewConversation() {
    this.#forgetStored();
    this.#drop();
    this.attempt = 0;
    this.#connect();
  }

  /** Skips the backoff wait (e.g. when the browser comes back online). */
  reconnectNow() {
    if (this.reconnectTimer === null) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.#connect();
  }

  #connect() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.ready = false;
    this.#setState(this.attempt === 0 ? "connecting" : "reconnecting");

    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const url = new URL(`${scheme}://${window.location.host}${this.path}`);
    const conversation = this.#readStored();
    if (conversation) url.searchParams.set("conversation", conversation);

    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("message", (event) => this.#onMessage(socket, event));
    socket.addEventListener("close", (event) => this.#onClose(socket, event));
    // An "error" event is always followed by "close": reconnecting is handled there.
  }

  #onMessage(socket, event) {
    if (socket !== this.socket) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // not ours to interpret; the server only sends JSON objects
    }
    if (frame === null || typeof frame !== "object") return;
    this.#sawLife();
    if (frame.type === "pong") return;
    if (frame.type === "conversation") {
      this.#store(frame.conversation);
      this.ready = true;
      this.attempt = 0;
      this.#startKeepalive();
      this.#setState("connected");
    }
    this.onFrame(frame);
  }

  #onClose(socket, event) {
    if (socket !== this.socket) return; // an old socket we already replaced
    this.socket = null;
    this.ready = false;
    this.#stopKeepalive();
    if (event.code === CLOSE_FORBIDDEN || event.code === CLOSE_NOT_FOUND) {
      // The remembered conversation is not ours (any more): start a fresh one.
      this.#forgetStored();
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect() {
    const ceiling = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** this.attempt);
    // "Equal jitter": between half and all of the ceiling, so many clients don't retry in step.
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this.attempt += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.#connect();
    }, delay);
    this.#setState(navigator.onLine === false ? "offline" : "reconnecting", { retryInMs: delay });
  }

  /** Closes the current socket without triggering its close handler. */
  #drop() {
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    this.#stopKeepalive();
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, "new conversation");
  }

  #startKeepalive() {
    this.#stopKeepalive();
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping" })) return;
      if (this.pongTimer === null) {
        this.pongTimer = setTimeout(() => this.#onKeepaliveTimeout(), this.pongTimeoutMs);
      }
    }, this.pingIntervalMs);
  }

  #stopKeepalive() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pingTimer = null;
    this.pongTimer = null;
  }

  /** Any frame proves the connection is alive. */
  #sawLife() {
    clearTimeout(this.pongTimer);
    this.pongTimer = null;
  }

  #onKeepaliveTimeout() {
    // The close handshake may never finish on a dead network: don't wait for it.
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    this.#stopKeepalive();
    socket?.close(CLOSE_KEEPALIVE_TIMEOUT, "keepalive timeout");
    this.#scheduleReconnect();
  }

  #setState(state, detail = {}) {
    this.onStateChange(state, detail);
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
