// Who answers the customer: the "Talk to a person" button and the banner with the server's
// `status` sentence (DESIGN.md, "Chat protocol, version 2").

/** Statuses in which a person, not the assistant, answers (the assistant stays silent). */
const WITH_A_PERSON = new Set(["waiting_for_agent", "with_agent"]);

export class HandoffStatus {
  /**
   * @param {object} options
   * @param {HTMLElement} options.banner  the role="status" line
   * @param {HTMLButtonElement} options.button  "Talk to a person"
   * @param {() => boolean} options.onRequest  sends the `handoff` frame; false when it could not
   * @param {HTMLElement} options.focusWhenHidden  takes the focus when the button it was on hides
   */
  constructor({ banner, button, onRequest, focusWhenHidden }) {
    this.banner = banner;
    this.button = button;
    this.onRequest = onRequest;
    this.focusWhenHidden = focusWhenHidden;
    this.status = "open";
    this.connected = false;
    this.requested = false; // a `handoff` frame is on its way; its `status` answer is not here yet

    button.addEventListener("click", () => {
      if (this.onRequest()) {
        this.requested = true;
        this.#refresh();
      }
    });
    this.#refresh();
  }

  /** Whether a person answers now (the customer's messages get no reply from the assistant). */
  get withAPerson() {
    return WITH_A_PERSON.has(this.status);
  }

  setConnected(connected) {
    this.connected = connected;
    if (!connected) this.requested = false;
    this.#refresh();
  }

  /** The status a (re)drawn conversation is in; a `status` frame follows unless it is open. */
  reset(status = "open") {
    this.status = status;
    this.requested = false;
    this.banner.textContent = "";
    this.#refresh();
  }

  /** A `status` frame: a person was asked for or took over, handed back, or closed. */
  show({ status, detail }) {
    this.status = status;
    this.requested = false;
    this.banner.textContent = detail ?? "";
    this.#refresh();
  }

  /** The request was refused (an error frame): the customer may try again. */
  failed() {
    this.requested = false;
    this.#refresh();
  }

  /** Drops the "assistant answers again" note once the customer has read on and written. */
  clearNote() {
    if (!this.withAPerson && this.status !== "closed") this.banner.textContent = "";
  }

  #refresh() {
    this.banner.dataset.status = this.status;
    const hadFocus = document.activeElement === this.button;
    this.button.hidden = this.withAPerson;
    this.button.disabled = !this.connected || this.requested;
    if (hadFocus && this.button.hidden) this.focusWhenHidden.focus();
  }
}
