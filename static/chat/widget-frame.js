// The chat inside the widget's frame on another site (static/widget/widget.js, docs/widget.md).
//
// A frame on another site may keep nothing: browsers that block third-party cookies block its
// storage too. So the widget, on the business's page, keeps the chat's state for the tab (the
// conversation and the owner token) and hands it to the frame in the URL's fragment,
// `/widget/#host=<the page's origin>&state=<JSON>`; the frame reports every change back. The
// frame also tells the widget that it loaded (a frame the browser refused sends nothing, and the
// widget then says so), asks it to close on Escape, and takes the focus when it opens.
// Messages go to the page's origin only: the browser drops them if the page is another's.

const READY = "chatbot:ready";
const CLOSE = "chatbot:close";
const STATE = "chatbot:state";
const FOCUS = "chatbot:focus";

/**
 * The widget's frame this chat runs in, or null (the chat page, or a frame without a widget).
 * @returns {{storage: Pick<Storage, "getItem" | "setItem" | "removeItem">, start: () => void} | null}
 */
export function widgetFrame() {
  if (window.parent === window) return null;
  const params = new URLSearchParams(window.location.hash.slice(1));
  const host = params.get("host");
  if (!host || !isOrigin(host)) return null;
  const values = new Map(Object.entries(parseState(params.get("state"))));

  const post = (message) => window.parent.postMessage(message, host);
  const report = () => post({ type: STATE, state: Object.fromEntries(values) });
  const storage = {
    getItem: (key) => values.get(key) ?? null,
    setItem: (key, value) => {
      values.set(key, String(value));
      report();
    },
    removeItem: (key) => {
      values.delete(key);
      report();
    },
  };

  function start() {
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || event.defaultPrevented) return;
      // The rating and survey forms close on Escape themselves; the next Escape closes the chat.
      if (event.target.closest?.(".feedback-form, .csat")) return;
      post({ type: CLOSE });
    });
    window.addEventListener("message", (event) => {
      if (event.source !== window.parent || event.origin !== host) return;
      if (event.data?.type === FOCUS) focusComposer();
    });
    post({ type: READY });
  }

  return { storage, start };
}

function isOrigin(value) {
  try {
    return new URL(value).origin === value;
  } catch {
    return false;
  }
}

/** The widget's state for this chat: string values only, whatever the fragment holds. */
function parseState(raw) {
  let state;
  try {
    state = JSON.parse(raw || "{}");
  } catch {
    return {};
  }
  if (state === null || typeof state !== "object") return {};
  return Object.fromEntries(Object.entries(state).filter(([, value]) => typeof value === "string"));
}

/** Focus the message box; until the socket is connected (it is disabled), the conversation. */
function focusComposer() {
  const input = document.getElementById("composer-input");
  const main = document.getElementById("main");
  if (!input.disabled) {
    input.focus();
    return;
  }
  main.focus();
  const observer = new MutationObserver(() => {
    if (input.disabled) return;
    observer.disconnect();
    if (document.activeElement === main) input.focus();
  });
  observer.observe(input, { attributes: true, attributeFilter: ["disabled"] });
}
