// The inbox's queue: conversations waiting for a person and those an agent has, each list the
// longest waiting first, kept up to date from `inbox` and `conversation.updated` frames.

import { conversationTitle, lastMessageLine, summaryLine } from "./summary-text.js";

/** Statuses that keep a conversation in the queue; open and closed ones leave it. */
const IN_QUEUE = new Set(["waiting_for_agent", "with_agent"]);

export class QueueList {
  /**
   * @param {object} options
   * @param {HTMLUListElement} options.waitingList
   * @param {HTMLUListElement} options.assignedList
   * @param {HTMLElement} options.waitingCount
   * @param {HTMLElement} options.waitingEmpty  shown while nobody waits
   * @param {HTMLElement} options.assignedEmpty
   * @param {HTMLElement} options.moreLine  holds the "show more" button; hidden when all are here
   * @param {HTMLButtonElement} options.moreButton
   * @param {(id: string) => void} options.onSelect  the agent opened a conversation
   * @param {(offset: number) => void} options.onMore  the agent asked for the next page
   */
  constructor({
    waitingList,
    assignedList,
    waitingCount,
    waitingEmpty,
    assignedEmpty,
    moreLine,
    moreButton,
    onSelect,
    onMore,
  }) {
    this.waitingList = waitingList;
    this.assignedList = assignedList;
    this.waitingCount = waitingCount;
    this.waitingEmpty = waitingEmpty;
    this.assignedEmpty = assignedEmpty;
    this.moreLine = moreLine;
    this.moreButton = moreButton;
    this.onSelect = onSelect;
    /** @type {Map<string, object>} summaries by conversation id */
    this.summaries = new Map();
    /** How many conversations the whole queue holds (the server sends a page at a time). */
    this.total = 0;
    this.selectedId = null;
    this.me = null;
    this.onMore = onMore;
    moreButton?.addEventListener("click", () => this.onMore?.(this.summaries.size));
  }

  /** The `inbox` frame: the queue's first page and its size (on every connect). */
  replaceAll(summaries, me, total = summaries.length) {
    this.me = me;
    this.summaries = new Map(summaries.map((summary) => [summary.id, summary]));
    this.total = total;
    this.render();
  }

  /** An `inbox.page` frame: the next rows (the queue may have moved: rows are keyed by id). */
  addPage(summaries, total) {
    for (const summary of summaries) this.summaries.set(summary.id, summary);
    this.total = total;
    this.render();
  }

  /**
   * A `conversation.updated` frame.
   * @returns {"added" | "changed" | "removed" | "ignored"} what it did to the queue
   */
  update(summary) {
    const known = this.summaries.has(summary.id);
    if (!IN_QUEUE.has(summary.status)) {
      this.summaries.delete(summary.id);
      if (known) this.total = Math.max(this.summaries.size, this.total - 1);
      this.render();
      return known ? "removed" : "ignored";
    }
    this.summaries.set(summary.id, summary);
    if (!known) this.total += 1;
    this.render();
    return known ? "changed" : "added";
  }

  get(id) {
    return this.summaries.get(id) ?? null;
  }

  get waitingTotal() {
    return [...this.summaries.values()].filter((s) => s.status === "waiting_for_agent").length;
  }

  select(id) {
    this.selectedId = id;
    for (const button of this.#buttons()) {
      if (button.dataset.conversationId === id) {
        button.setAttribute("aria-current", "true");
      } else {
        button.removeAttribute("aria-current");
      }
    }
  }

  /** Updates the waited times in place (every few seconds). */
  refreshTimes(nowMs = Date.now()) {
    for (const button of this.#buttons()) {
      const summary = this.summaries.get(button.dataset.conversationId);
      if (!summary) continue;
      button.querySelector(".queue-meta").textContent = summaryLine(summary, this.me, nowMs);
    }
  }

  /** Draws both lists again. */
  render(nowMs = Date.now()) {
    const focusedId = document.activeElement?.closest?.(".queue-item")?.dataset.conversationId;
    const ordered = [...this.summaries.values()].sort(byLongestWaiting);
    const waiting = ordered.filter((summary) => summary.status === "waiting_for_agent");
    const assigned = ordered.filter((summary) => summary.status === "with_agent");
    this.waitingList.replaceChildren(...waiting.map((summary) => this.#row(summary, nowMs)));
    this.assignedList.replaceChildren(...assigned.map((summary) => this.#row(summary, nowMs)));
    this.waitingCount.textContent = String(waiting.length);
    this.waitingEmpty.hidden = waiting.length > 0;
    this.assignedEmpty.hidden = assigned.length > 0;
    const notShown = Math.max(0, this.total - this.summaries.size);
    if (this.moreLine) {
      this.moreLine.hidden = notShown === 0;
      this.moreButton.textContent = `Show more: ${notShown} more in the queue`;
    }
    if (focusedId) {
      this.#buttons().find((button) => button.dataset.conversationId === focusedId)?.focus();
    }
  }

  #row(summary, nowMs) {
    const item = document.createElement("li");
    item.className = "queue-row";
    item.dataset.status = summary.status;

    const button = document.createElement("button");
    button.type = "button";
    button.className = "queue-item";
    button.dataset.conversationId = summary.id;
    button.dataset.testid = "queue-item";
    if (summary.id === this.selectedId) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => this.onSelect(summary.id));

    const title = document.createElement("span");
    title.className = "queue-title";
    title.textContent = conversationTitle(summary);
    const meta = document.createElement("span");
    meta.className = "queue-meta";
    meta.dataset.testid = "queue-meta";
    meta.textContent = summaryLine(summary, this.me, nowMs);
    button.append(title, meta);
    const preview = lastMessageLine(summary);
    if (preview) {
      const last = document.createElement("span");
      last.className = "queue-preview";
      last.textContent = preview;
      button.append(last);
    }
    item.append(button);
    return item;
  }

  #buttons() {
    return [...this.waitingList.children, ...this.assignedList.children]
      .map((item) => item.querySelector(".queue-item"))
      .filter(Boolean);
  }
}

/** The longest waiting first; a conversation without a handoff time last. */
function byLongestWaiting(a, b) {
  const since = (summary) =>
    summary.waiting_since ? Date.parse(summary.waiting_since) : Number.POSITIVE_INFINITY;
  const [first, second] = [since(a), since(b)];
  return first === second ? 0 : first - second;
}
