// A page's period section (totals, change, chart): reloaded from its fragment URL when
// the live counts change (live.js; once a second at most) and every minute, so a page
// left open keeps its numbers (and rolls over to a new day).
"use strict";

(function () {
  let box = document.getElementById("period");
  if (!box || !box.dataset.fragment) return;
  const url = box.dataset.fragment;
  let queued = false;
  let last = 0;
  let seen = "";

  async function reload() {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return;
      const template = document.createElement("template");
      template.innerHTML = (await response.text()).trim();
      const fresh = template.content.firstElementChild;
      if (fresh && fresh.id === "period") {
        fresh.dataset.fragment = url;
        box.replaceWith(fresh);
        box = fresh;
        box.dataset.loaded = String(Date.now());
      }
    } catch {
      // offline for a moment: the next change or minute tries again
    }
  }

  document.addEventListener("tally:counts", (event) => {
    const now = event.detail.up_count + "/" + event.detail.down_count;
    if (now === seen || queued) return;
    const first = seen === "";
    seen = now;
    if (first) return; // the page was drawn with these counts
    queued = true;
    setTimeout(() => { queued = false; last = Date.now(); reload(); },
               Math.max(0, last + 1000 - Date.now()));
  });
  setInterval(reload, 60000);
})();
