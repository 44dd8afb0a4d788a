// The counter page's live counts: the counter's stream of Server-Sent Events, opened
// with the session cookie (/w/SLUG/c/ID/stream, same origin: no token in the page).
// EventSource reconnects by itself after a dropped connection; when the server refuses
// the stream (signed out, too many streams, restarting) this script fetches the counts
// once, follows a sign-in redirect, and opens the stream again after a growing pause.
"use strict";

(function () {
  const box = document.getElementById("counts");
  if (!box || typeof EventSource === "undefined") return;
  let source = null;
  let pause = 2000;
  const MAX_PAUSE = 60000;

  function text(id, value) {
    const node = document.getElementById(id);
    if (node && node.textContent !== String(value)) node.textContent = String(value);
  }

  function show(data) {
    text("up-count", data.up_count);
    text("down-count", data.down_count);
    text("value-count", data.up_count - data.down_count);
    const when = new Date(data.updated_at);
    const time = document.getElementById("updated-at");
    if (time && !isNaN(when)) {
      time.setAttribute("datetime", when.toISOString());
      time.textContent = when.toISOString().slice(0, 16).replace("T", " ") + " UTC";
    }
    box.dataset.live = "open";
    document.dispatchEvent(new CustomEvent("tally:counts", { detail: data }));
  }

  async function refresh() {
    // the counts as a page fragment; a signed-out session answers where to sign in
    try {
      const response = await fetch(box.dataset.fragment, {
        credentials: "same-origin",
        headers: { "HX-Request": "true", "HX-Current-URL": location.href },
      });
      const redirect = response.headers.get("HX-Redirect");
      if (redirect) {
        location.assign(redirect);
        return false;
      }
      if (response.ok) {
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const id of ["up-count", "down-count", "value-count"]) {
          const node = fresh.getElementById(id);
          if (node) text(id, node.textContent);
        }
      }
    } catch {
      // offline: the next attempt tries again
    }
    return true;
  }

  function connect() {
    source = new EventSource(box.dataset.stream);
    source.onopen = () => { pause = 2000; };
    source.onmessage = (event) => {
      try {
        show(JSON.parse(event.data));
      } catch {
        // not a counter: ignore it
      }
    };
    source.onerror = async () => {
      if (source.readyState !== EventSource.CLOSED) {
        box.dataset.live = "reconnecting"; // EventSource tries again by itself
        return;
      }
      box.dataset.live = "closed";
      source = null;
      if (!(await refresh())) return;
      setTimeout(connect, pause);
      pause = Math.min(pause * 2, MAX_PAUSE);
    };
  }

  connect();
  window.addEventListener("pagehide", () => { if (source) source.close(); });
})();
