// The widget's install page (templates/conversations/widget_install.html): copies the snippet.

const snippet = document.getElementById("snippet");
const button = document.getElementById("copy-snippet");
const status = document.getElementById("copy-status");

button.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(snippet.value);
    status.textContent = "Copied. Paste it into your website's pages.";
  } catch {
    // No clipboard access (a page served over plain http): select it for Ctrl+C instead.
    snippet.focus();
    snippet.select();
    status.textContent = "Press Ctrl+C (⌘C on a Mac) to copy the selected snippet.";
  }
});
