// Thumbs-up/down under a bot reply, and the "what went wrong?" form behind thumbs-down.

const THUMB_PATH =
  "M7 10v11H3V10h4Zm2 11h8.3a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 18.7 10H14l.9-4.3a1.6 1.6 0 0 0-.4-1.4L13.6 3 9 8v13Z";

let formCounter = 0;

function thumbIcon(down) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "20");
  svg.setAttribute("height", "20");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  if (down) svg.classList.add("flip");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", THUMB_PATH);
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

function thumbButton(rating) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "thumb-button";
  button.dataset.testid = rating === 1 ? "thumbs-up" : "thumbs-down";
  button.dataset.rating = String(rating);
  button.setAttribute("aria-pressed", "false");
  button.setAttribute("aria-label", rating === 1 ? "Helpful" : "Not helpful");
  button.title = rating === 1 ? "Helpful" : "Not helpful";
  button.append(thumbIcon(rating === -1));
  return button;
}

export class FeedbackControls {
  /**
   * @param {object} options
   * @param {number} options.messageId
   * @param {1 | -1 | null} options.rating  the rating already stored, if any
   * @param {HTMLTemplateElement} options.formTemplate
   * @param {(messageId: number, feedback: {rating: 1 | -1, reason?: string, correction?: string}) => boolean} options.onSubmit
   *   sends the frame; false when it could not be sent
   */
  constructor({ messageId, rating, formTemplate, onSubmit }) {
    this.messageId = messageId;
    this.formTemplate = formTemplate;
    this.onSubmit = onSubmit;
    this.form = null;

    this.element = document.createElement("div");
    this.element.className = "feedback";
    this.element.setAttribute("role", "group");
    this.element.setAttribute("aria-label", "Rate this answer");

    this.up = thumbButton(1);
    this.down = thumbButton(-1);
    this.down.setAttribute("aria-expanded", "false");
    this.confirmation = document.createElement("p");
    this.confirmation.className = "feedback-confirmation";
    this.confirmation.dataset.testid = "feedback-confirmation";
    this.confirmation.setAttribute("role", "status");

    const buttons = document.createElement("div");
    buttons.className = "thumbs";
    buttons.append(this.up, this.down, this.confirmation);
    this.element.append(buttons);

    this.up.addEventListener("click", () => this.#rateUp());
    this.down.addEventListener("click", () => this.#toggleForm());

    this.setRating(rating);
    this.setEnabled(false);
  }

  setEnabled(enabled) {
    this.up.disabled = !enabled;
    this.down.disabled = !enabled;
  }

  /** Shows a stored rating (from history or a feedback.saved frame). */
  setRating(rating) {
    this.up.setAttribute("aria-pressed", String(rating === 1));
    this.down.setAttribute("aria-pressed", String(rating === -1));
  }

  /** The server stored the rating. */
  saved(rating) {
    this.setRating(rating);
    const hadFocusInForm = this.form?.contains(document.activeElement);
    this.#closeForm();
    if (hadFocusInForm) this.down.focus();
    this.confirmation.textContent = "Thanks for your feedback";
  }

  /** The server refused the rating (an error frame): let the customer try again. */
  failed() {
    const submit = this.form?.querySelector('[type="submit"]');
    if (submit) submit.disabled = false;
  }

  #rateUp() {
    this.#closeForm();
    this.confirmation.textContent = "";
    this.onSubmit(this.messageId, { rating: 1 });
  }

  #toggleForm() {
    if (this.form) {
      this.#closeForm();
    } else {
      this.#openForm();
    }
  }

  #openForm() {
    this.confirmation.textContent = "";
    const fragment = this.formTemplate.content.cloneNode(true);
    const form = fragment.querySelector("form");
    formCounter += 1;
    form.id = `feedback-form-${formCounter}`;
    form.setAttribute("aria-label", "Tell us what went wrong");
    // Each form's radio buttons are their own group.
    for (const input of form.querySelectorAll('input[type="radio"]')) {
      input.name = `reason-${formCounter}`;
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#submitForm(form);
    });
    form.querySelector('[data-action="cancel"]').addEventListener("click", () => {
      this.#closeForm();
      this.down.focus();
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        this.#closeForm();
        this.down.focus();
      }
    });
    this.element.append(form);
    this.form = form;
    this.down.setAttribute("aria-expanded", "true");
    this.down.setAttribute("aria-controls", form.id);
    form.querySelector("input, textarea")?.focus();
  }

  #submitForm(form) {
    const reason = form.querySelector('input[type="radio"]:checked')?.value ?? "";
    const correction = form.querySelector('textarea[name="correction"]').value.trim();
    const feedback = { rating: -1 };
    if (reason) feedback.reason = reason;
    if (correction) feedback.correction = correction;
    if (this.onSubmit(this.messageId, feedback)) {
      form.querySelector('[type="submit"]').disabled = true;
    }
  }

  #closeForm() {
    if (!this.form) return;
    this.form.remove();
    this.form = null;
    this.down.setAttribute("aria-expanded", "false");
    this.down.removeAttribute("aria-controls");
  }
}
