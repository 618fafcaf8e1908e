// The one-question survey after a person closed the conversation: a score from 1 to 5 and an
// optional comment (`csat` frame), then a thank-you (`csat.saved`).

export class SatisfactionSurvey {
  /**
   * @param {object} options
   * @param {HTMLFormElement} options.form  radio buttons named "score", a "comment" textarea
   * @param {HTMLElement} options.thanks  a role="status" line
   * @param {(answer: {score: number, comment: string}) => boolean} options.onSubmit
   *   sends the frame; false when it could not be sent
   * @param {HTMLElement} options.focusWhenDone  takes the focus when the survey it was in hides
   */
  constructor({ form, thanks, onSubmit, focusWhenDone }) {
    this.form = form;
    this.thanks = thanks;
    this.onSubmit = onSubmit;
    this.focusWhenDone = focusWhenDone;
    this.submit = form.querySelector('[type="submit"]');
    this.sending = false;

    form.addEventListener("change", () => this.#refresh());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#send();
    });
    form.querySelector('[data-action="dismiss"]').addEventListener("click", () => this.hide());
  }

  /** `csat.request`: the conversation was closed and the survey is unanswered. */
  open() {
    this.sending = false;
    if (this.form.hidden) {
      this.form.reset();
      this.thanks.textContent = "";
      this.form.hidden = false;
    } // else asked again after a reconnect: keep what was chosen
    this.#refresh();
  }

  hide() {
    const hadFocus = this.form.contains(document.activeElement);
    this.form.hidden = true;
    if (hadFocus) this.focusWhenDone.focus();
  }

  /** Hides the survey and its thank-you (a new conversation). */
  clear() {
    this.hide();
    this.thanks.textContent = "";
  }

  /** `csat.saved`. */
  saved() {
    this.hide();
    this.thanks.textContent = "Thank you for your answer!";
  }

  /** The answer was refused: let the customer try again. */
  failed() {
    this.sending = false;
    this.#refresh();
  }

  #score() {
    return Number(this.form.querySelector('input[name="score"]:checked')?.value ?? 0);
  }

  #send() {
    const score = this.#score();
    if (score < 1 || score > 5 || this.sending) return;
    const comment = this.form.querySelector('textarea[name="comment"]').value.trim();
    if (this.onSubmit({ score, comment })) {
      this.sending = true;
      this.#refresh();
    }
  }

  #refresh() {
    this.submit.disabled = this.sending || this.#score() === 0;
  }
}
