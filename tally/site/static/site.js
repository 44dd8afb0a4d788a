// Tally's dashboard: copy buttons, confirmations, the focus of a refused form. No inline
// scripts (the CSP forbids them); everything works without JavaScript except copying to
// the clipboard.
"use strict";

document.addEventListener("click", async (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const source = document.getElementById(copy.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // no clipboard permission (plain http, old browser): select the text instead
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
    copy.textContent = "Copied";
    copy.setAttribute("aria-live", "polite");
    setTimeout(() => { copy.textContent = "Copy"; }, 2000);
    return;
  }
  const confirmButton = event.target.closest("[data-confirm]");
  if (confirmButton && !window.confirm(confirmButton.dataset.confirm)) {
    event.preventDefault();
  }
});

// A refused form (tally.site.pages.FormError) posted to its own #fragment, so the page
// comes back scrolled to it; browsers then skip `autofocus`, so put the focus in the first
// refused field here, without scrolling away from the message above it.
// (After `load`: Chromium's scroll to the fragment would take the focus away again.)
window.addEventListener("load", () => {
  const refused = document.querySelector("[aria-invalid='true'][autofocus]");
  if (refused && document.activeElement !== refused) refused.focus({ preventScroll: true });
});
