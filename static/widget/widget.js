// The chat widget a business pastes into its own site (docs/widget.md):
//
//   <script src="https://CHAT-HOST/static/widget/widget.js"
//           data-chatbot-origin="https://CHAT-HOST" async></script>
//
// A bubble in the bottom-right corner opens the chat (CHAT-HOST/widget/) in a frame. All of it
// lives in a shadow root, so the page's CSS cannot reach it. It first reads the business's name
// and colour from CHAT-HOST/widget/config.json, which also tells it whether this site may show
// the chat at all; a site that may not, or a chat that does not load, gets a sentence and a link
// to the chat page instead of a blank box. A plain script with no dependencies: it runs on pages
// we do not control, so it adds one element and one global name (window.__chatbotWidget).
//
// The frame is a third-party one, which browsers let keep nothing (no cookie, often no storage).
// So this script keeps the chat's state for the tab in the page's own sessionStorage, hands it
// to the frame in the URL's fragment and stores what the frame reports back
// (static/chat/widget-frame.js): the customer's conversation goes on from page to page.
(function () {
  "use strict";

  if (window.__chatbotWidget) return; // pasted twice
  const script =
    document.currentScript || document.querySelector('script[src*="/widget/widget.js"]');
  if (!script) return;
  const origin = chatOrigin(script);
  if (!origin) return;
  window.__chatbotWidget = { origin };

  const FRAME_TIMEOUT_MS = 15000; // the chat's frame says it loaded, or we say it did not
  const STATE_KEY = "chatbot-widget:" + origin;
  const MAX_STATE_CHARS = 2000;
  const COLOUR = /^#[0-9a-f]{6}$/i;
  const TEXT = {
    bubble: "Chat with us",
    notAllowed: "Our chat can't be shown on this website.",
    failed: "Our chat could not be loaded right now.",
    link: "Open the chat in a new tab",
  };

  let state = "loading"; // loading | ready | not-allowed | failed
  let frame = null;
  let frameReady = false;
  let frameTimer = null;
  let waitingForConfig = null;
  let memoryState = "{}"; // where the page's sessionStorage is refused

  const root = document.createElement("chatbot-widget");
  const shadow = root.attachShadow({ mode: "open" });
  const style = document.createElement("style");
  style.textContent = stylesheet();
  const bubble = element("button", "bubble", {
    type: "button",
    "aria-label": TEXT.bubble,
    "aria-expanded": "false",
    "aria-controls": "chatbot-panel",
    "data-testid": "chatbot-bubble",
  });
  bubble.append(icon("chat"), icon("close"));
  const panel = element("div", "panel", {
    id: "chatbot-panel",
    role: "dialog",
    "aria-label": TEXT.bubble,
    "data-testid": "chatbot-panel",
  });
  panel.hidden = true;
  const notice = element("div", "notice", { role: "alert", tabindex: "-1" });
  notice.hidden = true;
  panel.append(notice);
  shadow.append(style, panel, bubble);

  bubble.addEventListener("click", () => (isOpen() ? close() : open()));
  shadow.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && isOpen()) {
      event.stopPropagation();
      close();
    }
  });
  window.addEventListener("message", onFrameMessage);

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);

  function start() {
    document.body.append(root);
    loadConfig();
  }

  function loadConfig() {
    state = "loading";
    waitingForConfig = fetch(origin + "/widget/config.json", { credentials: "omit" })
      .then((response) => {
        if (response.status === 403) return "not-allowed";
        if (!response.ok) return "failed";
        return response.json().then((body) => {
          applyConfig(body);
          return "ready";
        });
      })
      .catch(() => "failed")
      .then((result) => {
        state = result;
        waitingForConfig = null;
        if (isOpen()) showContent();
      });
  }

  function applyConfig(body) {
    const label = "Chat with " + (body.business_name || "us");
    bubble.setAttribute("aria-label", label);
    bubble.title = label;
    panel.setAttribute("aria-label", label);
    if (COLOUR.test(body.colour || "")) {
      root.style.setProperty("--chatbot-brand", body.colour);
      root.style.setProperty("--chatbot-on-brand", readableOn(body.colour));
    }
  }

  function isOpen() {
    return !panel.hidden;
  }

  function open() {
    panel.hidden = false;
    bubble.setAttribute("aria-expanded", "true");
    if (state === "failed" && !waitingForConfig) loadConfig(); // try again
    showContent();
  }

  function close() {
    panel.hidden = true;
    bubble.setAttribute("aria-expanded", "false");
    bubble.focus();
  }

  /** The chat's frame, or the sentence that says why there is none. */
  function showContent() {
    if (state === "loading") return; // shown once the config has arrived
    if (state !== "ready") {
      showNotice(state === "not-allowed" ? TEXT.notAllowed : TEXT.failed);
      return;
    }
    if (!frame) {
      hideNotice(); // from an earlier try
      createFrame();
    }
    if (frameReady) focusChat();
  }

  function createFrame() {
    const fragment = new URLSearchParams({ host: window.location.origin, state: readState() });
    frame = element("iframe", "frame", {
      src: origin + "/widget/#" + fragment,
      title: panel.getAttribute("aria-label"),
      "data-testid": "chatbot-frame",
    });
    panel.prepend(frame);
    frameTimer = setTimeout(() => {
      if (!frameReady) showNotice(TEXT.failed);
    }, FRAME_TIMEOUT_MS);
  }

  function onFrameMessage(event) {
    if (!frame || event.source !== frame.contentWindow || event.origin !== origin) return;
    const type = event.data && event.data.type;
    if (type === "chatbot:ready") {
      frameReady = true;
      clearTimeout(frameTimer);
      hideNotice();
      frame.hidden = false;
      if (isOpen()) focusChat();
    } else if (type === "chatbot:close" && isOpen()) {
      close();
    } else if (type === "chatbot:state") {
      writeState(event.data.state);
    }
  }

  /** The chat's state for this tab (the frame's conversation and owner token), as JSON. */
  function readState() {
    try {
      return window.sessionStorage.getItem(STATE_KEY) || "{}";
    } catch {
      return memoryState;
    }
  }

  function writeState(state) {
    if (state === null || typeof state !== "object") return;
    const json = JSON.stringify(state);
    if (json.length > MAX_STATE_CHARS) return;
    memoryState = json;
    try {
      window.sessionStorage.setItem(STATE_KEY, json);
    } catch {
      /* kept in memory: the conversation lasts as long as this page */
    }
  }

  function focusChat() {
    frame.focus();
    frame.contentWindow.postMessage({ type: "chatbot:focus" }, origin);
  }

  function showNotice(sentence) {
    if (frame) frame.hidden = true;
    notice.replaceChildren();
    const text = element("p", "", {});
    text.textContent = sentence;
    const link = element("a", "", { href: origin + "/", target: "_blank", rel: "noopener" });
    link.textContent = TEXT.link;
    const paragraph = element("p", "", {});
    paragraph.append(link);
    notice.append(text, paragraph);
    notice.hidden = false;
    panel.classList.add("with-notice");
    if (isOpen()) notice.focus();
  }

  function hideNotice() {
    notice.hidden = true;
    panel.classList.remove("with-notice");
  }

  function chatOrigin(tag) {
    try {
      return new URL(tag.dataset.chatbotOrigin || tag.src, window.location.href).origin;
    } catch {
      return null;
    }
  }

  /** Black or white, whichever reads better on the brand colour (WCAG relative luminance). */
  function readableOn(hex) {
    const [r, g, b] = [1, 3, 5].map((i) => {
      const c = parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    const onWhite = 1.05 / (luminance + 0.05);
    const onBlack = (luminance + 0.05) / 0.05;
    return onWhite >= onBlack ? "#ffffff" : "#111111";
  }

  function element(tag, className, attributes) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  }

  function icon(kind) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "26");
    svg.setAttribute("height", "26");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "icon icon-" + kind);
    const path = document.createElementNS(ns, "path");
    path.setAttribute(
      "d",
      kind === "chat"
        ? "M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.5 4v-4A2.5 2.5 0 0 1 4 13.5v-8Z"
        : "M6 6l12 12M18 6 6 18",
    );
    path.setAttribute("fill", kind === "chat" ? "currentColor" : "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", kind === "chat" ? "0" : "2.4");
    path.setAttribute("stroke-linecap", "round");
    svg.append(path);
    return svg;
  }

  function stylesheet() {
    return `
      :host {
        all: initial !important;
        display: block !important;
        position: fixed !important;
        z-index: 2147483000 !important;
        inset: auto 0 0 auto !important;
        width: 0 !important;
        height: 0 !important;
        --brand: var(--chatbot-brand, #1f6feb);
        --on-brand: var(--chatbot-on-brand, #ffffff);
        font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
          sans-serif !important;
        color: #1d2430 !important;
      }
      [hidden] { display: none !important; }
      .bubble {
        position: fixed;
        right: 20px;
        bottom: 20px;
        width: 56px;
        height: 56px;
        margin: 0;
        padding: 0;
        display: grid;
        place-items: center;
        border: 0;
        border-radius: 50%;
        background: var(--brand);
        color: var(--on-brand);
        box-shadow: 0 4px 14px rgb(16 24 40 / 28%);
        cursor: pointer;
      }
      .bubble:hover { filter: brightness(1.08); }
      .bubble:focus-visible { outline: 3px solid #0b62d6; outline-offset: 3px; }
      .bubble .icon-close, .bubble[aria-expanded="true"] .icon-chat { display: none; }
      .bubble[aria-expanded="true"] .icon-close { display: block; }
      .panel {
        position: fixed;
        right: 20px;
        bottom: 88px;
        width: min(380px, calc(100vw - 40px));
        height: min(620px, calc(100vh - 108px));
        display: flex;
        flex-direction: column;
        overflow: hidden;
        background: #ffffff;
        border: 1px solid #d5dbe3;
        border-radius: 14px;
        box-shadow: 0 12px 32px rgb(16 24 40 / 22%);
      }
      .panel.with-notice { height: auto; }
      .frame { flex: 1; width: 100%; height: 100%; border: 0; display: block; }
      .notice { padding: 24px; outline: none; }
      .notice p { margin: 0 0 12px; }
      .notice a { color: #0b62d6; font-weight: 600; }
      .notice a:focus-visible { outline: 3px solid #0b62d6; outline-offset: 2px; }
      @media (max-width: 480px) {
        .panel { left: 8px; right: 8px; top: 8px; bottom: 84px; width: auto; height: auto; }
      .panel.with-notice { top: auto; }
        .bubble { right: 14px; bottom: 14px; }
      }
    `;
  }
})();
