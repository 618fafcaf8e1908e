// A JSON websocket that reconnects with exponential backoff and jitter and pings so that a dead
// connection is noticed. The chat (connection.js) and the staff inbox (../inbox/main.js) use it.

const CLOSE_KEEPALIVE_TIMEOUT = 4000;

/**
 * @typedef {"connecting" | "connected" | "reconnecting" | "offline"} ConnectionState
 */

export class ReconnectingSocket {
  /**
   * @param {object} options
   * @param {string} options.path  websocket path, e.g. "/ws/chat/"
   * @param {string} options.readyFrameType  the server's first frame (e.g. "conversation"): the
   *   socket counts as connected, and `send` works, once it has arrived
   * @param {(frame: object) => void} options.onFrame  every JSON frame from the server but pongs
   * @param {(state: ConnectionState, detail: {retryInMs?: number}) => void} options.onStateChange
   * @param {() => Record<string, string>} [options.searchParams]  the query of each new socket
   * @param {(frame: object) => void} [options.onReady]  the ready frame, before `onFrame` sees it
   * @param {(event: CloseEvent) => void} [options.onClose]  the server closed the socket; a
   *   reconnect follows
   */
  constructor({
    path,
    readyFrameType,
    onFrame,
    onStateChange,
    searchParams = () => ({}),
    onReady = () => {},
    onClose = () => {},
    pingIntervalMs = 25_000,
    pongTimeoutMs = 10_000,
    backoffBaseMs = 500,
    backoffMaxMs = 30_000,
  }) {
    this.path = path;
    this.readyFrameType = readyFrameType;
    this.onFrame = onFrame;
    this.onStateChange = onStateChange;
    this.searchParams = searchParams;
    this.onReady = onReady;
    this.onClose = onClose;
    this.pingIntervalMs = pingIntervalMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.backoffBaseMs = backoffBaseMs;
    this.backoffMaxMs = backoffMaxMs;

    /** @type {WebSocket | null} */
    this.socket = null;
    this.ready = false; // true once the server's ready frame has arrived
    this.attempt = 0;
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;

    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.#setState("offline"));
  }

  start() {
    this.#connect();
  }

  /**
   * Sends a frame if the socket is ready.
   * @returns {boolean} whether it was handed to the socket
   */
  send(frame) {
    if (!this.ready || this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Closes the current socket (without reconnecting from its close) and connects afresh. */
  restart(reason = "restart") {
    this.#drop(reason);
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
    for (const [name, value] of Object.entries(this.searchParams())) {
      if (value) url.searchParams.set(name, value);
    }

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
    if (frame.type === this.readyFrameType) {
      this.onReady(frame);
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
    this.onClose(event);
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
  #drop(reason) {
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    this.#stopKeepalive();
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, reason);
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
}
