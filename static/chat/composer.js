// The message box: Enter sends, Shift+Enter makes a new line, a counter shows the limit.

const MAX_ROWS_HEIGHT_PX = 160;

export class Composer {
  /**
   * @param {object} options
   * @param {HTMLFormElement} options.form
   * @param {HTMLTextAreaElement} options.input
   * @param {HTMLButtonElement} options.sendButton
   * @param {HTMLElement} options.count  the number in the counter
   * @param {HTMLElement} options.counter
   * @param {number} options.maxChars
   * @param {(text: string) => boolean} options.onSend  false when it could not be sent
   */
  constructor({ form, input, sendButton, count, counter, maxChars, onSend }) {
    this.form = form;
    this.input = input;
    this.sendButton = sendButton;
    this.count = count;
    this.counter = counter;
    this.maxChars = maxChars;
    this.onSend = onSend;
    this.connected = false;
    this.waitingForReply = false;

    input.disabled = false; // usable for drafting as soon as the script runs
    input.addEventListener("input", () => this.#refresh());
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#send();
    });
    this.#refresh();
  }

  setConnected(connected) {
    this.connected = connected;
    this.#refresh();
  }

  setWaitingForReply(waiting) {
    this.waitingForReply = waiting;
    this.#refresh();
  }

  /** Puts text back (a message the server refused) unless the customer typed something new. */
  restore(text) {
    if (this.input.value.trim() === "") {
      this.input.value = text;
      this.#refresh();
    }
  }

  focus() {
    this.input.focus();
  }

  #send() {
    const text = this.input.value.trim();
    if (!this.#canSend(text)) return;
    if (this.onSend(text)) {
      this.input.value = "";
      this.#refresh();
    }
  }

  #canSend(text) {
    return this.connected && !this.waitingForReply && text.length > 0 && text.length <= this.maxChars;
  }

  #refresh() {
    const length = this.input.value.length;
    this.count.textContent = String(length);
    this.counter.dataset.level =
      length > this.maxChars ? "over" : length >= this.maxChars * 0.9 ? "near" : "ok";
    this.sendButton.disabled = !this.#canSend(this.input.value.trim());
    this.sendButton.title = this.connected ? "" : "Waiting for the connection…";
    // Grow with the text, up to a few lines.
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, MAX_ROWS_HEIGHT_PX)}px`;
  }
}
