// The small "Connected / Reconnecting…" indicator in the header (a role="status" region).

const LABELS = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline: waiting for the network…",
};

export class ConnectionStatus {
  /** @param {HTMLElement} element  has a .status-text child */
  constructor(element) {
    this.element = element;
    this.text = element.querySelector(".status-text");
  }

  /** @param {"connecting" | "connected" | "reconnecting" | "offline"} state */
  show(state) {
    if (this.element.dataset.state === state) return; // don't re-announce every retry
    this.element.dataset.state = state;
    this.text.textContent = LABELS[state] ?? state;
  }
}
